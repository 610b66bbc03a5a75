"""Access keys, the master key, and secrets at rest: nothing returned once is kept in clear."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support import Cmhost, create_server, database_bytes, error_code


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[Cmhost]:
    server = Cmhost(tmp_path).start()
    yield server
    server.stop()


def _issue(cm: Cmhost, account: str) -> dict[str, str]:
    out = cm.cli("keys", "create", "--account", account, *cm.storage_args())
    key = json.loads(out.stdout)
    assert set(key) == {"AccessKeyId", "SecretAccessKey", "Account"}
    assert key["Account"] == account
    return key


def test_issued_key_works_at_once_and_delete_revokes(fresh: Cmhost) -> None:
    key = _issue(fresh, "123456789012")
    client = fresh.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    assert client.describe_servers()["Servers"] == []
    listed = json.loads(fresh.cli("keys", "list", *fresh.storage_args()).stdout)
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]
    assert "SecretAccessKey" not in json.dumps(listed) and key["SecretAccessKey"] not in \
        json.dumps(listed)
    fresh.cli("keys", "delete", key["AccessKeyId"], *fresh.storage_args())


    time.sleep(5.5)  # a deleted key stops working within the 5 s key cache
    with pytest.raises(ClientError) as err:
        client.describe_servers()
    assert error_code(err.value) == "UnrecognizedClientException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    missing = fresh.cli("keys", "delete", key["AccessKeyId"], *fresh.storage_args(), check=False)
    assert missing.returncode != 0 and "no access key" in missing.stderr


def test_keys_create_validates_account(fresh: Cmhost) -> None:
    bad = fresh.cli("keys", "create", "--account", "12ab", *fresh.storage_args(), check=False)
    assert bad.returncode == 2 and "12-digit" in bad.stderr


def test_dev_key_refused_off_loopback(tmp_path: Path) -> None:
    server = Cmhost(tmp_path, host="0.0.0.0").start()
    try:
        server.host = "127.0.0.1"  # connect through loopback to the 0.0.0.0 bind
        with pytest.raises(ClientError) as err:
            server.client().describe_servers()
        assert error_code(err.value) == "UnrecognizedClientException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        key = _issue(server, "123456789012")
        issued = server.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
        assert issued.describe_servers()["Servers"] == []
    finally:
        server.stop()


def test_master_key_file_is_private_and_wrong_key_fails_clearly(fresh: Cmhost) -> None:
    mode = stat.S_IMODE(os.stat(fresh.master_key_file).st_mode)
    assert mode == 0o600
    fresh.stop()
    original = fresh.master_key_file.read_text()
    fresh.master_key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    try:
        with pytest.raises(RuntimeError) as err:
            fresh.start(timeout=20)
        assert "master key" in str(err.value) and "not the key this database" in str(err.value)
    finally:
        fresh.master_key_file.write_text(original)
    fresh.start()


def _secret_needles(server: dict[str, object]) -> list[bytes]:
    """Distinctive fragments of every secret CreateServer returned."""
    needles: list[bytes] = []
    for attr in server["EngineAttributes"]:  # type: ignore[union-attr]
        name, value = attr["Name"], attr["Value"]
        if name in ("CHEF_DELIVERY_ADMIN_PASSWORD", "PUPPET_ADMIN_PASSWORD"):
            needles.append(value.encode())
        elif name == "CHEF_PIVOTAL_KEY":
            needles += _pem_body_lines(value)
        elif name.endswith("STARTER_KIT"):
            kit = zipfile.ZipFile(io.BytesIO(base64.b64decode(value)))
            for info in kit.infolist():
                data = kit.read(info)
                if b"PRIVATE KEY" in data:
                    needles += _pem_body_lines(data.decode())
    return needles


def _pem_body_lines(pem: str) -> list[bytes]:
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    return [ln.encode() for ln in lines[1:4]]


def test_no_returned_secret_is_stored_in_clear(fresh: Cmhost) -> None:
    client = fresh.client()
    chef = create_server(client, "chef-secrets", "Chef")
    puppet = create_server(client, "puppet-secrets", "Puppet",
                           EngineAttributes=[{"Name": "PUPPET_ADMIN_PASSWORD",
                                              "Value": "Sup3r-s3cret-pw"}])
    key = _issue(fresh, "123456789012")
    fresh.advance(120)
    needles = _secret_needles(chef) + _secret_needles(puppet) + [b"Sup3r-s3cret-pw",
                                                                  key["SecretAccessKey"].encode()]
    assert len(needles) >= 10
    fresh.stop()  # checkpoint the WAL into the database file
    for path in [*fresh.data_dir.rglob("*"), fresh.log_path]:
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"secret found in {path}"
    stored = database_bytes(fresh.database_url)
    for needle in needles:
        assert needle not in stored, "secret found in the database"
    # And the API never returns them again.
    fresh.start()
    described = json.dumps(fresh.client().describe_servers()["Servers"], default=str).encode()
    for needle in needles:
        assert needle not in described
