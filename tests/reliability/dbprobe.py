"""Read-only looks at a cmhost's storage: database integrity, rows, and backup artifacts."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from cmhost.engines import archive
from cmhost.engines.base import EngineError
from cmhost.storage.secrets import MasterKeyError, SecretBox, load_or_create_master_key


class DbProbe:
    """Reads a cmhost database without changing it (SQLite opened `mode=ro`; PostgreSQL by
    plain SELECTs), and checks the blob store against it."""

    def __init__(self, database_url: str, data_dir: Path, master_key_file: Path) -> None:
        self.url = database_url
        self.is_sqlite = database_url.startswith("sqlite:///")
        self.blobs = data_dir / "blobs"
        self.engines = data_dir / "engines"
        self.master_key_file = master_key_file
        self._engine: Any = None
        self._unpacked: set[tuple[str, str]] = set()  # (backup id, sha256) already opened

    def _box(self) -> SecretBox:
        return SecretBox(load_or_create_master_key(self.master_key_file, create=False))

    def rows(self, sql: str) -> list[dict[str, Any]]:
        if self.is_sqlite:
            path = self.url.removeprefix("sqlite:///")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                conn.row_factory = sqlite3.Row
                return [dict(r) for r in conn.execute(sql).fetchall()]
            finally:
                conn.close()
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = create_engine(self.url, poolclass=NullPool)
        with self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(sql)).mappings().all()]

    def integrity_problems(self) -> list[str]:
        """`PRAGMA integrity_check` and `PRAGMA foreign_key_check` (SQLite; PostgreSQL keeps
        its own consistency and has no equivalent to run)."""
        if not self.is_sqlite:
            return []
        problems = []
        check = [r["integrity_check"] for r in self.rows("PRAGMA integrity_check")]
        if check != ["ok"]:
            problems.append(f"PRAGMA integrity_check: {check[:10]}")
        fk = self.rows("PRAGMA foreign_key_check")
        if fk:
            problems.append(f"PRAGMA foreign_key_check: {fk[:10]}")
        return problems

    def artifact_problems(self) -> tuple[list[str], int]:
        """Every backup in state OK has its artifact (present, sha256 and size as recorded,
        decryptable, a complete archive) and its log. Returns (problems, backups checked)."""
        problems: list[str] = []
        box = self._box()
        backups = self.rows("SELECT id, arn, account, region, status, artifact_key, "
                            "artifact_sha256, artifact_size FROM backups")
        checked = 0
        for b in backups:
            if b["status"] != "OK":
                continue
            checked += 1
            where = f"backup {b['id']} (OK)"
            if not b["artifact_key"] or not b["artifact_sha256"]:
                problems.append(f"{where}: no artifact key or checksum recorded")
                continue
            path = self.blobs / b["artifact_key"]
            try:
                sealed = path.read_bytes()
            except FileNotFoundError:
                problems.append(f"{where}: artifact {b['artifact_key']} is missing")
                continue
            if hashlib.sha256(sealed).hexdigest() != b["artifact_sha256"]:
                problems.append(f"{where}: artifact sha256 does not match the recorded one")
                continue
            if b["artifact_size"] is not None and len(sealed) != b["artifact_size"]:
                problems.append(f"{where}: artifact is {len(sealed)} bytes, recorded "
                                f"{b['artifact_size']}")
            if (b["id"], b["artifact_sha256"]) not in self._unpacked:
                try:
                    archive.unpack(box.decrypt_bytes(sealed, b["arn"]))
                    self._unpacked.add((b["id"], b["artifact_sha256"]))
                except (MasterKeyError, EngineError) as exc:
                    problems.append(f"{where}: artifact does not decrypt/unpack: {exc}")
            log = self.blobs / "logs" / b["account"] / b["region"] / f"{b['id']}.log"
            if not log.is_file():
                problems.append(f"{where}: its log {log.name} is missing")
        return problems, checked

    def leftovers(self) -> dict[str, list[str]]:
        """Temporary files and staging directories a crash left behind (leaks, not damage)."""
        found: dict[str, list[str]] = {"blob_tmp": [], "engine_tmp": [], "engine_staging": []}
        if self.blobs.is_dir():
            found["blob_tmp"] = sorted(str(p.relative_to(self.blobs))
                                       for p in self.blobs.rglob(".*.tmp"))
        if self.engines.is_dir():
            found["engine_tmp"] = sorted(str(p.relative_to(self.engines))
                                         for p in self.engines.rglob(".*.tmp"))
            found["engine_staging"] = sorted(
                p.name for p in self.engines.iterdir()
                if p.is_dir() and p.name.startswith(".") and (".new-" in p.name
                                                              or ".old-" in p.name))
        return found

    def engine_dirs(self) -> set[str]:
        if not self.engines.is_dir():
            return set()
        return {p.name for p in self.engines.iterdir()
                if p.is_dir() and not p.name.startswith(".")}

    def jobs(self, status: str) -> list[dict[str, Any]]:
        rows = self.rows(f"SELECT id, kind, server_id, step, status, attempts, run_at, "
                         f"last_error, payload FROM jobs WHERE status = '{status}'")
        for r in rows:
            if isinstance(r["payload"], str):
                r["payload"] = json.loads(r["payload"])
        return rows

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
