"""Backup artifacts of the embedded engine: a deterministic tar.gz with a manifest of checksums.

An artifact holds `manifest.json` (format, version, the server it came from, and the size
and SHA-256 of every other member), `material.json` (the server's identity, secrets
included) and `files/<path>` for every file of the server's state directory. It therefore
carries private keys: the caller encrypts it before it is stored anywhere.

The same state always packs to the same bytes (fixed times, owners and order, gzip without
a timestamp), and `unpack` refuses anything it did not write: a changed or missing byte, a
truncated stream, an unknown format, a member outside `files/`, a link or a device.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import regex

from cmhost.engines.base import EngineError, EngineMaterial

FORMAT = "cmhost-embedded-backup"
VERSION = 1
MANIFEST = "manifest.json"
MATERIAL = "material.json"
FILES_PREFIX = "files/"
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 100_000

_MTIME = 1477958400  # 2016-11-01T00:00:00Z, the API's version date
_PART = regex.compile(r"[\-\p{Alnum}_:.]+")
_REQUIRED_MATERIAL = {"public": ("ca_cert", "server_cert"), "secrets": ("ca_key", "server_key")}


@dataclass(frozen=True)
class Backup:
    """A verified artifact: its manifest, the identity it carries and the state files."""

    manifest: dict[str, Any]
    material: EngineMaterial
    files: dict[str, bytes]  # relative POSIX path in the state directory -> content


def _corrupt(detail: str) -> EngineError:
    return EngineError(f"The backup artifact is unusable: {detail}.")


# Every artifact starts with exactly these bytes (deflate, no name, no time, maximum
# compression, unknown OS), written here rather than by GzipFile, whose header differs
# between Python versions; a changed header byte is caught like any other.
GZIP_HEADER = bytes.fromhex("1f8b08000000000002ff")


def _gzip(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(data) + deflater.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return GZIP_HEADER + body + trailer


def _member(name: str, data: bytes, mode: int) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info, io.BytesIO(data)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dump(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _safe_path(relative: str) -> bool:
    """True for a relative path that stays inside the state directory ("a/b", never "../b")."""
    parts = relative.split("/")
    return all(_PART.fullmatch(p) and p not in (".", "..") for p in parts)


def _check_path(relative: str) -> None:
    if not _safe_path(relative):
        raise _corrupt(f"the member name {relative[:100]!r} is not a safe relative path")


def pack(meta: Mapping[str, str], material: EngineMaterial, files: Mapping[str, bytes]) -> bytes:
    """The artifact of a server: `meta` (family, server name...) goes into the manifest.

    Raises EngineError for a file name `unpack` would refuse, or a state too large for it.
    """
    for relative in files:
        if not _safe_path(relative):
            raise EngineError(
                f"The engine state holds {relative[:100]!r}, a name that cannot be backed up."
            )
    members: dict[str, tuple[bytes, int]] = {
        MATERIAL: (_dump({"public": material.public, "secrets": material.secrets}), 0o600)
    }
    for relative in sorted(files):
        members[FILES_PREFIX + relative] = (files[relative], 0o644)
    manifest = {
        **meta,
        "format": FORMAT,
        "version": VERSION,
        "files": [
            {"name": name, "size": len(data), "sha256": _digest(data)}
            for name, (data, _) in members.items()
        ],
    }
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(*_member(MANIFEST, _dump(manifest), 0o644))
        for name, (data, mode) in members.items():
            archive.addfile(*_member(name, data, mode))
    if tar_buffer.tell() > MAX_UNPACKED_BYTES:
        raise EngineError(
            f"The engine state is larger than {MAX_UNPACKED_BYTES} bytes; it cannot be backed up."
        )
    return _gzip(tar_buffer.getvalue())


def _gunzip(artifact: bytes) -> bytes:
    if not artifact.startswith(GZIP_HEADER):
        raise _corrupt("it is not a backup of the embedded engine (unexpected header)")
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(artifact, MAX_UNPACKED_BYTES + 1)
    except zlib.error as exc:
        raise _corrupt(f"the compressed data is damaged ({exc})") from None
    if len(raw) > MAX_UNPACKED_BYTES:
        raise _corrupt(f"it unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    if not inflater.eof:
        raise _corrupt("it is truncated")
    if inflater.unused_data:
        raise _corrupt("it has bytes after its end")
    return raw


def _read_members(raw: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for info in archive:
                if len(members) >= MAX_MEMBERS:
                    raise _corrupt(f"it has more than {MAX_MEMBERS} members")
                if not info.isreg():
                    raise _corrupt(f"the member {info.name[:100]!r} is not a regular file")
                if info.name in members:
                    raise _corrupt(f"the member {info.name[:100]!r} appears twice")
                if info.name not in (MANIFEST, MATERIAL):
                    if not info.name.startswith(FILES_PREFIX):
                        raise _corrupt(f"the member {info.name[:100]!r} is not expected")
                    _check_path(info.name[len(FILES_PREFIX) :])
                handle = archive.extractfile(info)
                data = handle.read() if handle else b""
                if len(data) != info.size:
                    raise _corrupt(f"the member {info.name[:100]!r} is truncated")
                members[info.name] = data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _corrupt(f"the archive cannot be read ({exc.__class__.__name__})") from None
    return members


def _check_manifest(members: dict[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in members:
        raise _corrupt("it has no manifest")
    try:
        manifest = json.loads(members[MANIFEST])
    except ValueError:
        raise _corrupt("its manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupt("it is not a backup of the embedded engine")
    if manifest.get("version") != VERSION:
        raise _corrupt(f"its format version {manifest.get('version')!r} is not {VERSION}")
    listed = manifest.get("files")
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise _corrupt("its manifest has no file list")
    expected = {str(e.get("name")): e for e in listed}
    present = set(members) - {MANIFEST}
    if set(expected) != present or len(expected) != len(listed):
        raise _corrupt("its members do not match its manifest")
    for name, entry in expected.items():
        data = members[name]
        if entry.get("size") != len(data) or entry.get("sha256") != _digest(data):
            raise _corrupt(f"the checksum of {name[:100]!r} does not match")
    return manifest


def _load_material(data: bytes) -> EngineMaterial:
    try:
        value = json.loads(data)
    except ValueError:
        raise _corrupt("material.json is not JSON") from None
    parts: dict[str, dict[str, str]] = {}
    for part, required in _REQUIRED_MATERIAL.items():
        section = value.get(part) if isinstance(value, dict) else None
        if not isinstance(section, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in section.items()
        ):
            raise _corrupt(f"material.json has no {part} section")
        missing = [k for k in required if not section.get(k)]
        if missing:
            raise _corrupt(f"material.json lacks {', '.join(missing)}")
        parts[part] = dict(section)
    return EngineMaterial(public=parts["public"], secrets=parts["secrets"])


def unpack(artifact: bytes) -> Backup:
    """Verify an artifact completely and return what it holds; EngineError if it is unusable."""
    members = _read_members(_gunzip(artifact))
    manifest = _check_manifest(members)
    if MATERIAL not in members:
        raise _corrupt("it has no material.json")
    material = _load_material(members[MATERIAL])
    files = {
        name[len(FILES_PREFIX) :]: data
        for name, data in members.items()
        if name.startswith(FILES_PREFIX)
    }
    return Backup(manifest=manifest, material=material, files=files)
