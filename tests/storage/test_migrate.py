"""`cmhost db upgrade` on databases it cannot simply go on with: two upgrades of one fresh
database at once, a first upgrade an older cmhost left half done, a database newer than this
cmhost. (Upgrades killed at any point: tests/reliability/test_upgrade_crash.py.)"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from tests.reliability import dbstate
from tests.support import ROOT, Cmhost, fresh_database_url


def _upgrade_command(workdir: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "cmhost", "db", "upgrade", "--data-dir",
            str(workdir / "data"), "--database-url", url, "--master-key-file",
            str(workdir / "secret" / "master.key")]


def _upgrade(workdir: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_upgrade_command(workdir, url), capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)


def _error(refused: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused command (and no traceback)."""
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("cmhost: error:")]
    assert len(errors) == 1, refused.stderr
    return errors[0]


def _half_created(workdir: Path) -> str:
    """A database whose first upgrade an older cmhost left half done: some of migration
    0001's tables (each CREATE TABLE committed by itself), no version stamp."""
    url = fresh_database_url(workdir)
    dbstate.migrate_to(url, "0001")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for table in ("servers", "tags", "meta", "jobs"):
            conn.execute(text(f"DROP TABLE {table}"))
    engine.dispose()
    return url


def test_two_upgrades_of_a_fresh_database_at_once_both_succeed(tmp_path: Path) -> None:
    for attempt in range(2):
        workdir = tmp_path / f"attempt-{attempt}"
        url = fresh_database_url(workdir)
        # The master key first: the two would race to write it (not what this is about).
        key = workdir / "secret" / "master.key"
        key.parent.mkdir(parents=True)
        key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        key.chmod(0o600)
        procs = [subprocess.Popen(_upgrade_command(workdir, url), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(2)]
        results = [(p.wait(120), p.communicate()[1]) for p in procs]
        assert [code for code, _ in results] == [0, 0], results
        assert dbstate.Database(url).revision() == dbstate.revisions()[-1]


def test_a_first_upgrade_left_half_done_is_started_again(tmp_path: Path) -> None:
    url = _half_created(tmp_path)
    done = _upgrade(tmp_path, url)
    assert done.returncode == 0, done.stderr
    db = dbstate.Database(url)
    assert db.revision() == dbstate.revisions()[-1]
    assert "servers" in db.tables()
    cm = Cmhost(tmp_path, database_url=url,
                master_key_file=tmp_path / "secret" / "master.key").start()
    try:
        assert cm.client().describe_servers()["Servers"] == []
    finally:
        cm.stop()


def test_tables_with_rows_but_no_version_are_refused_in_one_line(tmp_path: Path) -> None:
    url = _half_created(tmp_path)
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (account, created_at) VALUES ('1', 0)"))
    engine.dispose()
    error = _error(_upgrade(tmp_path, url))
    assert "accounts" in error and "alembic_version" in error, error
    assert dbstate.Database(url).query("SELECT account FROM accounts") == [("1",)]


def test_a_database_newer_than_this_cmhost_is_refused_in_one_line(tmp_path: Path) -> None:
    url = fresh_database_url(tmp_path)
    assert _upgrade(tmp_path, url).returncode == 0
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    error = _error(_upgrade(tmp_path, url))
    assert "9999" in error and "newer cmhost" in error, error
