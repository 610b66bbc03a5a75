"""A data directory knows which database it belongs to: a start on a database that vanished
(deleted, emptied), on another one, or on a damaged file refuses in one line and writes
nothing; `--accept-new-database` starts over on purpose. A missing master key file is not
replaced by a new one. The data directory and the SQLite files are private."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support import ROOT, Cmhost, create_server, error_code


def sqlite_cmhost(workdir: Path, **kwargs: object) -> Cmhost:
    """A cmhost on an SQLite file of its own, whichever database the suite runs on."""
    return Cmhost(workdir, database_url=f"sqlite:///{workdir / 'data' / 'cmhost.db'}",
                  **kwargs)  # type: ignore[arg-type]


def refused(cm: Cmhost, *extra: str) -> str:
    """What a start that must fail says (its whole output), checked to be one line."""
    run = subprocess.run([sys.executable, "-m", "cmhost", "serve", *cm.args, *extra],
                         capture_output=True, text=True, env=cm.env, cwd=ROOT, timeout=60,
                         check=False)
    output = (run.stdout + run.stderr).strip()
    assert run.returncode != 0, output
    assert len(output.splitlines()) == 1 and output.startswith("cmhost: error: "), output
    return output


def database_path(cm: Cmhost) -> Path:
    return Path(cm.database_url.removeprefix("sqlite:///"))


def used(cm: Cmhost) -> Cmhost:
    """cm started, one server made, stopped."""
    cm.start()
    create_server(cm.client(), "kept")
    cm.stop()
    return cm


def test_a_database_emptied_while_stopped_is_refused_until_accepted(tmp_path: Path) -> None:
    cm = used(sqlite_cmhost(tmp_path))
    database_path(cm).write_bytes(b"")  # truncated to zero
    line = refused(cm)
    assert f"the data directory {cm.data_dir} belongs to database" in line
    assert "--accept-new-database" in line and "restore" in line
    assert database_path(cm).stat().st_size == 0  # nothing was written
    cm.args.append("--accept-new-database")
    cm.start()
    assert cm.client().describe_servers()["Servers"] == []
    cm.stop()
    cm.args.remove("--accept-new-database")
    cm.start()  # the data directory belongs to the new database now
    cm.stop()


def test_a_database_deleted_while_running_takes_no_more_writes(tmp_path: Path) -> None:
    cm = sqlite_cmhost(tmp_path).start()
    try:
        create_server(cm.client(), "kept")
        database_path(cm).unlink()
        with pytest.raises(ClientError) as raised:
            create_server(cm.client(), "lost")
        assert error_code(raised.value) == "ServiceUnavailable"
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(cm.url + "/_cmhost/health", timeout=30)
        assert health.value.code == 503
        assert "deleted" in json.loads(health.value.read())["database"]
        assert not database_path(cm).exists()  # not made again, empty
    finally:
        cm.stop()
    assert "was deleted while cmhost was running" in cm.log()
    assert "belongs to database" in refused(cm)


def test_another_database_is_refused(tmp_path: Path) -> None:
    first = used(Cmhost(tmp_path / "first"))
    second = used(Cmhost(tmp_path / "second"))
    # The first data directory with the second database (and the second's master key).
    mixed = Cmhost(tmp_path / "first", database_url=second.database_url,
                   master_key_file=second.master_key_file)
    line = refused(mixed)
    assert f"the data directory {first.data_dir} belongs to database" in line
    assert "--database-url" in line and "--accept-new-database" in line
    # On purpose: the first data directory then belongs to the second database.
    mixed.args.append("--accept-new-database")
    mixed.start()
    assert [s["ServerName"] for s in mixed.client().describe_servers()["Servers"]] == ["kept"]
    mixed.stop()
    assert "belongs to database" in refused(first)


def test_a_database_from_before_ids_adopts_its_data_directory(tmp_path: Path) -> None:
    cm = used(sqlite_cmhost(tmp_path))
    (cm.data_dir / "database-id").unlink()
    with sqlite3.connect(database_path(cm)) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'database_id'")
    cm.start()
    assert [s["ServerName"] for s in cm.client().describe_servers()["Servers"]] == ["kept"]
    cm.stop()
    with sqlite3.connect(database_path(cm)) as conn:
        (given,) = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
    assert (cm.data_dir / "database-id").read_text().strip() == given


@pytest.mark.parametrize(("damage", "words"), [
    (lambda data: b"this is not an SQLite database" + data[30:], "file is not a database"),
    (lambda data: data[:4096] + b"\xff" * (len(data) - 4096), "malformed"),
])
def test_a_damaged_database_is_refused_in_one_line(tmp_path: Path, damage: object,
                                                   words: str) -> None:
    cm = used(sqlite_cmhost(tmp_path))
    path = database_path(cm)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    line = refused(cm)
    assert f"the database file {path} is damaged" in line and words in line, line


def test_a_missing_master_key_is_not_replaced(tmp_path: Path) -> None:
    cm = used(Cmhost(tmp_path))
    cm.master_key_file.unlink()
    line = refused(cm)
    assert f"the master key file {cm.master_key_file} does not exist" in line
    assert "no new key was written" in line
    assert not cm.master_key_file.exists()


def test_the_data_directory_and_database_files_are_private(tmp_path: Path) -> None:
    cm = sqlite_cmhost(tmp_path).start()
    try:
        create_server(cm.client(), "kept")
        files = [p for p in cm.data_dir.iterdir() if p.name.startswith("cmhost.db")]
        assert sorted(p.name for p in files) == ["cmhost.db", "cmhost.db-shm", "cmhost.db-wal"]
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
            p.name: 0o600 for p in files}
        assert stat.S_IMODE(cm.data_dir.stat().st_mode) == 0o700
        # An older cmhost left them open to everyone: the next start closes them.
        cm.kill()
        for path in files:
            path.chmod(0o644)
        cm.data_dir.chmod(0o755)
        cm.start()
        assert stat.S_IMODE(cm.data_dir.stat().st_mode) == 0o700
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
            p.name: 0o600 for p in files}
    finally:
        cm.stop()
