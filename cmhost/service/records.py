"""Domain records the service returns: a server and an event, as plain typed values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cmhost.engines.attributes import engine_family
from cmhost.engines.base import EngineMaterial, ServerSpec
from cmhost.storage.repo import Row
from cmhost.storage.secrets import SecretBox


@dataclass(frozen=True)
class Server:
    id: str
    arn: str
    name: str
    account: str
    region: str
    engine: str
    engine_model: str
    engine_version: str
    driver: str
    status: str
    status_reason: str | None
    maintenance_status: str | None
    endpoint: str
    cloudformation_stack_arn: str
    instance_type: str
    instance_profile_arn: str
    service_role_arn: str
    key_pair: str | None
    associate_public_ip_address: bool
    disable_automated_backup: bool
    backup_retention_count: int
    preferred_backup_window: str
    preferred_maintenance_window: str
    security_group_ids: list[str] | None
    subnet_ids: list[str] | None
    custom_domain: str | None
    engine_attributes: list[tuple[str, str]]
    created_at: float
    revision: int = 0

    @classmethod
    def from_row(cls, row: Row) -> Server:
        return cls(
            id=row["id"], arn=row["arn"], name=row["name"], account=row["account"],
            region=row["region"], engine=row["engine"], engine_model=row["engine_model"],
            engine_version=row["engine_version"], driver=row["driver"], status=row["status"],
            status_reason=row["status_reason"], maintenance_status=row["maintenance_status"],
            endpoint=row["endpoint"], cloudformation_stack_arn=row["cloudformation_stack_arn"],
            instance_type=row["instance_type"], instance_profile_arn=row["instance_profile_arn"],
            service_role_arn=row["service_role_arn"], key_pair=row["key_pair"],
            associate_public_ip_address=bool(row["associate_public_ip_address"]),
            disable_automated_backup=bool(row["disable_automated_backup"]),
            backup_retention_count=row["backup_retention_count"],
            preferred_backup_window=row["preferred_backup_window"],
            preferred_maintenance_window=row["preferred_maintenance_window"],
            security_group_ids=row["security_group_ids"], subnet_ids=row["subnet_ids"],
            custom_domain=row["custom_domain"],
            engine_attributes=[(a[0], a[1]) for a in row["engine_attributes"] or []]
            + _upgrade_flag(row),
            created_at=row["created_at"], revision=row.get("revision") or 0,
        )


def _upgrade_flag(row: Row) -> list[tuple[str, str]]:
    """Chef 12 servers show CHEF_MAJOR_UPGRADE_AVAILABLE (StartMaintenance can upgrade them)."""
    if row["engine"] == "Chef" and str(row["engine_version"]).startswith("12"):
        return [("CHEF_MAJOR_UPGRADE_AVAILABLE", "true")]
    return []


@dataclass(frozen=True)
class Event:
    server_name: str
    created_at: float
    message: str
    log_url: str | None


def server_spec(row: Row, api_endpoint: str) -> ServerSpec:
    """The driver's view of a stored server."""
    return ServerSpec(
        server_id=row["id"], name=row["name"], account=row["account"], region=row["region"],
        engine=row["engine"], family=engine_family(row["engine"]),
        engine_version=row["engine_version"], endpoint=row["endpoint"],
        api_endpoint=api_endpoint, custom_domain=row["custom_domain"])


def server_material(row: Row, box: SecretBox) -> EngineMaterial:
    """The engine identity of a stored server, its secrets decrypted for the driver."""
    import json

    secrets = json.loads(box.decrypt(row["engine_secrets_enc"], row["arn"]))
    return EngineMaterial(public=dict(row["engine_public"] or {}), secrets=secrets)


@dataclass(frozen=True)
class Backup:
    id: str
    arn: str
    backup_type: str
    created_at: float
    description: str | None
    server_name: str
    status: str
    status_description: str | None
    user_arn: str | None
    settings: dict[str, Any]
    log_url: str | None

    @classmethod
    def from_row(cls, row: Row, log_url: str | None) -> Backup:
        return cls(id=row["id"], arn=row["arn"], backup_type=row["backup_type"],
                   created_at=row["created_at"], description=row["description"],
                   server_name=row["server_name"], status=row["status"],
                   status_description=row["status_description"], user_arn=row["user_arn"],
                   settings=dict(row["settings"] or {}), log_url=log_url)
