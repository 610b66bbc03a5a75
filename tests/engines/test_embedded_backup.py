"""Backups of embedded servers: complete, deterministic, verified on restore, swapped in whole."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import archive, pki, statedir
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineFamily,
    EngineMaterial,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded import EmbeddedDriver

from .conftest import csr_for, make_spec


@pytest.fixture(scope="module")
def node_key() -> rsa.RSAPrivateKey:
    return pki.generate_rsa_key()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    unused = tmp_path_factory.mktemp("unused")
    return {
        family: EmbeddedDriver(DriverContext(unused), family).prepare(make_spec(family), {})
        for family in ("Chef", "Puppet")
    }


def _server(
    tmp: Path, family: EngineFamily, prepared: dict[str, Prepared]
) -> tuple[EmbeddedDriver, ServerSpec]:
    driver = EmbeddedDriver(DriverContext(tmp), family)
    spec = make_spec(family)
    driver.provision(spec, prepared[family].material)
    return driver, spec


def _associate(
    driver: EmbeddedDriver, spec: ServerSpec, prepared: Prepared, node: str, key: rsa.RSAPrivateKey
) -> list[tuple[str, str]]:
    if spec.family == "Chef":
        attributes = {"CHEF_NODE_PUBLIC_KEY": pki.public_key_pem(key)}
    else:
        attributes = {"PUPPET_NODE_CSR": csr_for(key, node)}
    return driver.associate_node(spec, prepared.material, node, attributes)


def _members(artifact: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _snapshot(tmp: Path) -> dict[str, bytes]:
    return {
        p.relative_to(tmp).as_posix(): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(tmp.rglob("*"))
    }


# ---------------------------------------------------------------------------- backup


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_backup_holds_material_and_every_file_with_checksums(
    tmp_path: Path, family: EngineFamily, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> None:
    driver, spec = _server(tmp_path, family, prepared)
    _associate(driver, spec, prepared[family], "web-1", node_key)
    artifact = driver.backup(spec, prepared[family].material)
    assert artifact == driver.backup(spec, prepared[family].material)  # deterministic

    members = _members(artifact)
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == archive.FORMAT and manifest["version"] == archive.VERSION
    assert manifest["family"] == family and manifest["server_name"] == "MyServer"
    assert manifest["engine_version"] == spec.engine_version
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) == set(members) - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(members[name]).hexdigest()
        assert entry["size"] == len(members[name])

    root = driver.server_dir(spec)
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {n.removeprefix("files/") for n in members if n.startswith("files/")} == on_disk
    expected = {"engine.json", "ca.pem", "server.pem", "nodes/web-1.json"}
    if family == "Puppet":
        expected |= {"crl.pem", "revoked.json"}
    assert on_disk == expected
    material = json.loads(members["material.json"])
    assert material["secrets"] == prepared[family].material.secrets
    assert material["public"] == prepared[family].material.public


def test_backup_refuses_a_server_without_state_or_with_another_ca(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    driver = EmbeddedDriver(DriverContext(tmp_path), "Chef")
    spec = make_spec("Chef")
    with pytest.raises(EngineError, match="nothing to back up"):
        driver.backup(spec, prepared["Chef"].material)
    driver.provision(spec, prepared["Chef"].material)
    with pytest.raises(EngineError, match="CA"):
        driver.backup(spec, prepared["Puppet"].material)


# --------------------------------------------------------------------------- restore


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_restore_brings_back_the_nodes_of_the_backup(
    tmp_path: Path, family: EngineFamily, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> None:
    driver, spec = _server(tmp_path, family, prepared)
    material = prepared[family].material
    before = _associate(driver, spec, prepared[family], "before", node_key)
    artifact = driver.backup(spec, material)
    after = _associate(driver, spec, prepared[family], "after", node_key)
    driver.disassociate_node(spec, material, "before", {})
    assert driver.node_names(spec) == ["after"]

    restored = driver.restore(spec, artifact)
    assert restored == material
    assert driver.node_names(spec) == ["before"]
    assert driver.check_health(spec, restored).status == "HEALTHY"
    if family == "Puppet":
        # The CRL is the backup's plus what the CA issued since: "before" is valid again,
        # "after" (issued after the backup) is revoked (issue 15 defect 2).
        assert not driver.is_revoked(spec, before[0][1])
        assert driver.is_revoked(spec, after[0][1])
    root = driver.server_dir(spec)
    assert not (root / "material.json").exists()
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert driver.restore(spec, artifact) == material  # idempotent
    assert driver.node_names(spec) == ["before"]
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(".") and p.is_dir()] == []


def test_restore_rebuilds_a_lost_server(
    tmp_path: Path, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> None:
    driver, spec = _server(tmp_path, "Chef", prepared)
    _associate(driver, spec, prepared["Chef"], "web-1", node_key)
    artifact = driver.backup(spec, prepared["Chef"].material)
    driver.destroy(spec)
    assert driver.check_health(spec, prepared["Chef"].material).status == "CONNECTION_LOST"
    restored = driver.restore(spec, artifact)
    assert driver.check_health(spec, restored).status == "HEALTHY"
    assert driver.node_names(spec) == ["web-1"]


def test_restore_into_another_server_reissues_its_certificate(
    tmp_path: Path, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> None:
    driver, spec = _server(tmp_path, "Chef", prepared)
    _associate(driver, spec, prepared["Chef"], "web-1", node_key)
    artifact = driver.backup(spec, prepared["Chef"].material)
    # CreateServer with BackupId: a new server (id, name, endpoint) from another's backup.
    other = make_spec(
        "Chef",
        server_id="6f1c2a4e-0000-4000-8000-00000000000b",
        name="Copy",
        endpoint="copy-ponmlkjihgfedcba.us-east-1.opsworks-cm.io",
    )
    restored = driver.restore(other, artifact)
    original = prepared["Chef"].material
    assert restored.public["ca_cert"] == original.public["ca_cert"]
    assert restored.secrets["ca_key"] == original.secrets["ca_key"]
    assert restored.public["server_cert"] != original.public["server_cert"]
    assert pki.certificate_names(restored.public["server_cert"]) == [other.endpoint]
    assert driver.check_health(other, restored).status == "HEALTHY"
    assert driver.node_names(other) == ["web-1"]
    engine = json.loads((driver.server_dir(other) / "engine.json").read_text())
    assert (engine["name"], engine["endpoint"]) == ("Copy", other.endpoint)
    assert driver.check_health(spec, original).status == "HEALTHY"  # the source is untouched


# -------------------------------------------------------------------- bad artifacts


@pytest.fixture
def chef_with_backup(
    tmp_path: Path, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> tuple[EmbeddedDriver, ServerSpec, bytes]:
    driver, spec = _server(tmp_path, "Chef", prepared)
    _associate(driver, spec, prepared["Chef"], "before", node_key)
    artifact = driver.backup(spec, prepared["Chef"].material)
    _associate(driver, spec, prepared["Chef"], "after", node_key)
    return driver, spec, artifact


def test_every_changed_byte_is_caught_and_the_server_is_untouched(
    tmp_path: Path, chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes]
) -> None:
    driver, spec, artifact = chef_with_backup
    before = _snapshot(tmp_path)
    positions = sorted(set(range(16)) | set(range(16, len(artifact), 13)) | {len(artifact) - 1})
    for position in positions:
        damaged = bytearray(artifact)
        damaged[position] ^= 0x5A
        with pytest.raises(EngineError, match="unusable"):
            driver.restore(spec, bytes(damaged))
    assert _snapshot(tmp_path) == before
    assert driver.node_names(spec) == ["after", "before"]


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.5, -8, -1])
def test_truncated_artifacts_are_refused(
    tmp_path: Path, chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes], keep: float
) -> None:
    driver, spec, artifact = chef_with_backup
    length = int(len(artifact) * keep) if isinstance(keep, float) else keep % len(artifact)
    before = _snapshot(tmp_path)
    with pytest.raises(EngineError, match="unusable"):
        driver.restore(spec, artifact[:length])
    with pytest.raises(EngineError, match="unusable"):
        driver.restore(spec, artifact + b"\x00")
    assert _snapshot(tmp_path) == before


def test_a_backup_of_the_other_family_is_refused(
    tmp_path: Path, prepared: dict[str, Prepared], node_key: rsa.RSAPrivateKey
) -> None:
    chef, chef_spec = _server(tmp_path / "a", "Chef", prepared)
    puppet, puppet_spec = _server(tmp_path / "b", "Puppet", prepared)
    chef_artifact = chef.backup(chef_spec, prepared["Chef"].material)
    puppet_artifact = puppet.backup(puppet_spec, prepared["Puppet"].material)
    before = _snapshot(tmp_path)
    with pytest.raises(EngineError, match="backup is of a Chef server"):
        puppet.restore(puppet_spec, chef_artifact)
    with pytest.raises(EngineError, match="backup is of a Puppet server"):
        chef.restore(chef_spec, puppet_artifact)
    assert _snapshot(tmp_path) == before


def _craft(
    members: Sequence[tarfile.TarInfo | tuple[str, bytes]],
    *,
    manifest: bool = True,
    **head_values: object,
) -> bytes:
    """A tar.gz in the artifact format, with a correct manifest, holding the given members."""
    plain = [m for m in members if isinstance(m, tuple)]
    listed = [
        {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in plain
    ]
    listed += [
        {"name": m.name, "size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
        for m in members
        if isinstance(m, tarfile.TarInfo)
    ]
    head = {"format": archive.FORMAT, "version": archive.VERSION, "family": "Chef", "files": listed}
    head.update(head_values)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if manifest:
            data = json.dumps(head).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return _gzip(buffer.getvalue())


def _gzip(data: bytes) -> bytes:
    """gzip with the header every artifact has (Python's own differs between versions)."""
    return archive.GZIP_HEADER + gzip.compress(data, mtime=0)[10:]


def _good_members(artifact: bytes) -> list[tuple[str, bytes]]:
    return [(n, d) for n, d in _members(artifact).items() if n != "manifest.json"]


def test_a_crafted_artifact_in_the_right_form_restores(
    tmp_path: Path, chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes]
) -> None:
    """The crafting helper below is faithful: without a trick its artifact is accepted."""
    driver, spec, artifact = chef_with_backup
    driver.restore(spec, _craft(_good_members(artifact)))
    assert driver.node_names(spec) == ["before"]


@pytest.mark.parametrize(
    "name",
    [
        "files/../../../escaped",
        "files/nodes/../../escaped",
        "/etc/escaped",
        "../escaped",
        "files//escaped",
        "files/./escaped",
        "files/a\\..\\escaped",
        "other/escaped",
    ],
)
def test_member_names_leaving_the_state_directory_are_refused(
    tmp_path: Path, chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes], name: str
) -> None:
    driver, spec, artifact = chef_with_backup
    before = _snapshot(tmp_path)
    crafted = _craft([*_good_members(artifact), (name, b"owned")])
    with pytest.raises(EngineError, match="unusable"):
        driver.restore(spec, crafted)
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.parent.rglob("escaped"))


@pytest.mark.parametrize(
    "kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE]
)
def test_links_directories_and_devices_are_refused(
    tmp_path: Path, chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes], kind: bytes
) -> None:
    driver, spec, artifact = chef_with_backup
    link = tarfile.TarInfo("files/nodes/evil.json")
    link.type = kind
    link.linkname = "/etc/passwd"
    with pytest.raises(EngineError, match="not a regular file"):
        driver.restore(spec, _craft([*_good_members(artifact), link]))


def test_manifest_mismatches_are_refused(
    chef_with_backup: tuple[EmbeddedDriver, ServerSpec, bytes],
) -> None:
    driver, spec, artifact = chef_with_backup
    good = _good_members(artifact)
    with pytest.raises(EngineError, match="no manifest"):
        driver.restore(spec, _craft(good, manifest=False))
    with pytest.raises(EngineError, match="appears twice"):
        driver.restore(spec, _craft([*good, good[-1]]))
    without_material = [(n, d) for n, d in good if n != "material.json"]
    with pytest.raises(EngineError, match="material.json"):
        driver.restore(spec, _craft(without_material))
    without_ca = [(n, d) for n, d in good if n != "files/ca.pem"]
    with pytest.raises(EngineError, match="engine files"):
        driver.restore(spec, _craft(without_ca))
    no_secrets = [
        (n, json.dumps({"public": json.loads(d)["public"], "secrets": {}}).encode())
        if n == "material.json"
        else (n, d)
        for n, d in good
    ]
    with pytest.raises(EngineError, match="lacks ca_key"):
        driver.restore(spec, _craft(no_secrets))
    with pytest.raises(EngineError, match="format version 2 is not 1"):
        driver.restore(spec, _craft(good, version=2))
    with pytest.raises(EngineError, match="not a backup of the embedded engine"):
        driver.restore(spec, _craft(good, format="something-else"))
    with pytest.raises(EngineError, match="do not match its manifest"):
        driver.restore(spec, _craft(good, files=[]))
    with pytest.raises(EngineError, match="archive cannot be read"):
        driver.restore(spec, _gzip(b"hello"))
    with pytest.raises(EngineError, match="unexpected header"):
        driver.restore(spec, gzip.compress(b"hello", mtime=0))
    with pytest.raises(EngineError, match="unusable"):
        driver.restore(spec, b"")


def test_pack_refuses_unsafe_paths() -> None:
    for name in ("../x", "a/../../x", "/etc/x", "a b"):
        with pytest.raises(EngineError, match="cannot be backed up"):
            archive.pack({}, EngineMaterial(), {name: b""})


def test_pack_refuses_what_unpack_could_not_take(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 4096)
    with pytest.raises(EngineError, match="larger than 4096 bytes"):
        archive.pack({}, EngineMaterial(), {"big": b"x" * 5000})


# ------------------------------------------------------------------- the swap itself


def test_a_failed_swap_leaves_the_old_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "engines" / "server"
    root.mkdir(parents=True)
    (root / "old.txt").write_text("old")

    rename = statedir.os.rename

    def refuse_staging(src: str | Path, dst: str | Path) -> None:
        if ".new-" in Path(src).name:
            raise OSError("disk full")
        rename(src, dst)

    monkeypatch.setattr(statedir.os, "rename", refuse_staging)
    with pytest.raises(OSError, match="disk full"):
        statedir.replace_dir(root, {"new.txt": b"new"})
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["old.txt"]
    assert [p.name for p in root.parent.iterdir()] == ["server"]

    statedir.replace_dir(root, {"new.txt": b"new", "nodes/a.json": b"{}"}, dirs=("nodes",))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "new.txt",
        "nodes",
        "nodes/a.json",
    ]


def test_leftovers_of_an_interrupted_swap_are_cleared(tmp_path: Path) -> None:
    root = tmp_path / "engines" / "server"
    stale = tmp_path / "engines" / ".server.old-x1"
    (stale / "state").mkdir(parents=True)
    (tmp_path / "engines" / ".server.new-x2").mkdir()
    statedir.replace_dir(root, {"a": b"1"})
    assert sorted(p.name for p in root.parent.iterdir()) == ["server"]
