"""Domain records to the wire shapes of the model (members absent when they have no value)."""

from __future__ import annotations

from typing import Any

from cmhost.service.accounts import AccountAttribute
from cmhost.service.engine_options import full_version
from cmhost.service.records import Backup, Event, Server


class RawJson(bytes):
    """A response body already encoded as JSON: the protocol sends it as it is."""


def attributes(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in pairs]


def server(s: Server, extra_attributes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AssociatePublicIpAddress": s.associate_public_ip_address,
        "BackupRetentionCount": s.backup_retention_count,
        "ServerName": s.name,
        "CreatedAt": round(s.created_at, 3),
        "CloudFormationStackArn": s.cloudformation_stack_arn,
        "DisableAutomatedBackup": s.disable_automated_backup,
        "Endpoint": s.endpoint,
        "Engine": s.engine,
        "EngineModel": s.engine_model,
        "EngineAttributes": attributes(
            extra_attributes if extra_attributes is not None else s.engine_attributes),
        "EngineVersion": full_version(s.engine, s.engine_version),
        "InstanceProfileArn": s.instance_profile_arn,
        "InstanceType": s.instance_type,
        "PreferredMaintenanceWindow": s.preferred_maintenance_window,
        "PreferredBackupWindow": s.preferred_backup_window,
        "ServiceRoleArn": s.service_role_arn,
        "Status": s.status,
        "ServerArn": s.arn,
    }
    optional = {
        "CustomDomain": s.custom_domain,
        "KeyPair": s.key_pair,
        "MaintenanceStatus": s.maintenance_status,
        "SecurityGroupIds": s.security_group_ids,
        "StatusReason": s.status_reason,
        "SubnetIds": s.subnet_ids,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def event(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"CreatedAt": round(e.created_at, 3), "ServerName": e.server_name,
                           "Message": e.message}
    if e.log_url:
        out["LogUrl"] = e.log_url
    return out


def account_attribute(a: AccountAttribute) -> dict[str, Any]:
    return {"Name": a.name, "Maximum": a.maximum, "Used": a.used}


def tags(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs]


def backup(b: Backup) -> dict[str, Any]:
    out: dict[str, Any] = {
        "BackupArn": b.arn, "BackupId": b.id, "BackupType": b.backup_type,
        "CreatedAt": round(b.created_at, 3), "ServerName": b.server_name, "Status": b.status,
    }
    settings = dict(b.settings)
    if "EngineVersion" in settings:
        settings["EngineVersion"] = full_version(str(settings.get("Engine")),
                                                 settings["EngineVersion"])
    optional: dict[str, Any] = {
        "Description": b.description, "StatusDescription": b.status_description,
        "UserArn": b.user_arn, "S3LogUrl": b.log_url, **settings,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out
