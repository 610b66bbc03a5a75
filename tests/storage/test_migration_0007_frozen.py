"""Migration 0007 carries its own frozen copies of the derivations it filled servers in
with; today they must still agree with the service's, so that servers migrated and servers
created since share one default subnet and the same kind of group and version."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from cmhost.service import engine_options, network

MIGRATION = (Path(__file__).parents[2] / "cmhost" / "storage" / "migrations" / "versions"
             / "0007_server_network_and_full_versions.py")


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0007", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_does_not_import_the_service_layer() -> None:
    text = MIGRATION.read_text()
    assert "from cmhost" not in text and "import cmhost" not in text


def test_the_frozen_derivations_agree_with_the_service() -> None:
    m = _migration()
    for account, region in (("111122223333", "us-east-1"), ("999988887777", "eu-west-1")):
        assert m.default_subnet_id(account, region) == network.default_subnet_id(account,
                                                                                  region)
    for server_id in ("2f0c8f1e-0000-4000-8000-000000000001", "x"):
        assert m.security_group_id(server_id) == network.security_group_id(server_id)
    for engine, versions in engine_options.VERSIONS.items():
        for major in (*versions, *versions.values(), "7"):
            assert m.full_version(engine, major) == engine_options.full_version(engine, major)
