"""repo.create_check: CreateServer's limit, count and name checks in one statement."""

from __future__ import annotations

from pathlib import Path

from cmhost.storage import repo
from cmhost.storage.db import Database
from tests.support import fresh_database_url


def add_server(db: Database, account: str, region: str, name: str) -> None:
    with db.write() as conn:
        repo.insert_server(conn, {
            "id": f"{account}-{region}-{name}", "account": account, "region": region,
            "name": name, "arn": f"arn:{account}:{region}:{name}", "engine": "Puppet",
            "engine_model": "Monolithic", "engine_version": "2019", "driver": "embedded",
            "status": "HEALTHY", "endpoint": f"{name}.example.test",
            "cloudformation_stack_arn": "arn:stack", "instance_type": "m5.large",
            "instance_profile_arn": "arn:profile", "service_role_arn": "arn:role",
            "associate_public_ip_address": True, "disable_automated_backup": True,
            "backup_retention_count": 1, "preferred_backup_window": "08:00",
            "preferred_maintenance_window": "Mon:08:00", "engine_public": {},
            "engine_secrets_enc": "", "engine_attributes": [], "created_at": 1.0,
            "updated_at": 1.0})


def test_limit_count_and_name_of_one_account_and_region(tmp_path: Path) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    with db.read() as conn:  # no account row yet, no servers
        assert repo.create_check(conn, "111122223333", "us-east-1", "a") == (None, 0, False)
    add_server(db, "111122223333", "us-east-1", "a")
    add_server(db, "111122223333", "us-east-1", "b")
    add_server(db, "111122223333", "eu-west-1", "c")  # another region
    add_server(db, "444455556666", "us-east-1", "d")  # another account
    with db.write() as conn:
        repo.set_account_limits(conn, "111122223333", 2.0, server_limit=7, backup_limit=None)
    with db.read() as conn:
        assert repo.create_check(conn, "111122223333", "us-east-1", "a") == (7, 2, True)
        assert repo.create_check(conn, "111122223333", "us-east-1", "c") == (7, 2, False)
        assert repo.create_check(conn, "111122223333", "eu-west-1", "c") == (7, 1, True)
        assert repo.create_check(conn, "444455556666", "us-east-1", "a") == (None, 1, False)
    db.dispose()
