"""The operation table: each OpsWorks CM operation, from validated wire input to wire output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from cmhost.api import serialize
from cmhost.api.serialize import RawJson
from cmhost.service import (
    accounts,
    backups,
    engine_attributes,
    events,
    maintenance,
    nodes,
    restore,
    servers,
    tags,
)
from cmhost.service.artifacts import LogLinks
from cmhost.service.context import Caller
from cmhost.service.pagination import Pager
from cmhost.service.runtime import Runtime

Params = dict[str, Any]
Handler = Callable[[Caller, Params], dict[str, Any] | RawJson]
F = TypeVar("F", bound=Callable[..., dict[str, Any] | RawJson])


def operation(name: str, *, reads_only: bool = False) -> Callable[[F], F]:
    """Marks a method as the handler of an operation; the table is built from the marks.

    `reads_only` handlers only read the database quickly; the protocol may run them on the
    event loop instead of a worker thread (see AwsJsonApp).
    """

    def mark(fn: F) -> F:
        fn.__cmhost_operation__ = name  # type: ignore[attr-defined]
        fn.__cmhost_reads_only__ = reads_only  # type: ignore[attr-defined]
        return fn

    return mark


def reads_only(handler: Handler) -> bool:
    return bool(getattr(handler, "__cmhost_reads_only__", False))


def _pairs(items: list[dict[str, Any]] | None, key: str = "Name", value: str = "Value"
           ) -> list[tuple[str, str]]:
    return [(item.get(key), item.get(value)) for item in items or []]  # type: ignore[misc]


def _with_token(out: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        out["NextToken"] = token
    return out


class OpsWorksCM:
    """Translates between wire shapes and the service layer; holds no state of its own."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pager = Pager(rt.box)
        self.log_links = LogLinks(rt.settings.resolved_public_url, rt.box)
        # Serialized servers by id, with the revision they were serialized at. A server row's
        # revision changes with every write, so a stale entry is never served.
        self._server_json: dict[str, tuple[int, bytes]] = {}
        # A page of DescribeServers by its (id, revision, name) rows: a page whose servers
        # did not change is served without looking at each server again.
        self._page_json: dict[tuple[servers.ServerRef, ...], bytes] = {}

    def table(self) -> dict[str, Handler]:
        found: dict[str, Handler] = {}
        for attr in dir(type(self)):
            name = getattr(getattr(type(self), attr), "__cmhost_operation__", None)
            if name is not None:
                found[name] = getattr(self, attr)
        return found

    @operation("CreateServer")
    def create_server(self, caller: Caller, p: Params) -> dict[str, Any]:
        req = servers.CreateServerInput(
            server_name=p["ServerName"], engine=p["Engine"],
            instance_profile_arn=p["InstanceProfileArn"], instance_type=p["InstanceType"],
            service_role_arn=p["ServiceRoleArn"], engine_model=p.get("EngineModel"),
            engine_version=p.get("EngineVersion"),
            engine_attributes=_pairs(p.get("EngineAttributes")),
            associate_public_ip_address=p.get("AssociatePublicIpAddress"),
            disable_automated_backup=p.get("DisableAutomatedBackup"),
            backup_retention_count=p.get("BackupRetentionCount"), key_pair=p.get("KeyPair"),
            preferred_backup_window=p.get("PreferredBackupWindow"),
            preferred_maintenance_window=p.get("PreferredMaintenanceWindow"),
            security_group_ids=p.get("SecurityGroupIds"), subnet_ids=p.get("SubnetIds"),
            tags=_pairs(p.get("Tags"), "Key", "Value"), backup_id=p.get("BackupId"),
            custom_domain=p.get("CustomDomain"), custom_certificate=p.get("CustomCertificate"),
            custom_private_key=p.get("CustomPrivateKey"))
        server, attributes = servers.create_server(self.rt, caller, req)
        return {"Server": serialize.server(server, attributes)}

    @operation("DescribeServers", reads_only=True)
    def describe_servers(self, caller: Caller, p: Params) -> RawJson:
        refs, token = servers.list_server_refs(
            self.rt, self.pager, caller, server_name=p.get("ServerName"),
            max_results=p.get("MaxResults"), next_token=p.get("NextToken"))
        key = tuple(refs)  # ids, revisions and names: the same page of the same servers
        page = self._page_json.get(key)
        if page is None:
            page = self._page_json[key] = self._servers_json(refs)
            if len(self._page_json) > 10_000:
                self._page_json.clear()
        tail = b"" if token is None else b',"NextToken":' + json.dumps(token).encode()
        return RawJson(b'{"Servers":[' + page + b"]" + tail + b"}")

    def _servers_json(self, refs: list[servers.ServerRef]) -> bytes:
        """The servers' JSON, joined; each server's is kept by revision."""
        cache = self._server_json
        missing = [ref[0] for ref in refs if cache.get(ref[0], (-1, b""))[0] != ref[1]]
        if missing:
            if len(cache) > 50_000:
                cache.clear()
            for server_id, server in servers.servers_by_ids(self.rt, missing).items():
                cache[server_id] = (server.revision, json.dumps(
                    serialize.server(server), separators=(",", ":")).encode())
        return b",".join(cache[ref[0]][1] for ref in refs if ref[0] in cache)

    @operation("UpdateServer")
    def update_server(self, caller: Caller, p: Params) -> dict[str, Any]:
        server = servers.update_server(
            self.rt, caller, server_name=p["ServerName"],
            disable_automated_backup=p.get("DisableAutomatedBackup"),
            backup_retention_count=p.get("BackupRetentionCount"),
            preferred_backup_window=p.get("PreferredBackupWindow"),
            preferred_maintenance_window=p.get("PreferredMaintenanceWindow"))
        return {"Server": serialize.server(server)}

    @operation("DeleteServer")
    def delete_server(self, caller: Caller, p: Params) -> dict[str, Any]:
        servers.delete_server(self.rt, caller, server_name=p["ServerName"])
        return {}

    @operation("DescribeEvents", reads_only=True)
    def describe_events(self, caller: Caller, p: Params) -> dict[str, Any]:
        found, token = events.describe_events(
            self.rt.db, self.pager, caller, server_name=p["ServerName"],
            max_results=p.get("MaxResults"), next_token=p.get("NextToken"),
            links=self.log_links)
        return _with_token({"ServerEvents": [serialize.event(e) for e in found]}, token)

    @operation("DescribeAccountAttributes", reads_only=True)
    def describe_account_attributes(self, caller: Caller, p: Params) -> dict[str, Any]:
        found = accounts.describe_account_attributes(self.rt, caller)
        return {"Attributes": [serialize.account_attribute(a) for a in found]}

    @operation("TagResource")
    def tag_resource(self, caller: Caller, p: Params) -> dict[str, Any]:
        tags.tag_resource(self.rt.db, caller, p["ResourceArn"], _pairs(p["Tags"], "Key", "Value"))
        return {}

    @operation("UntagResource")
    def untag_resource(self, caller: Caller, p: Params) -> dict[str, Any]:
        tags.untag_resource(self.rt.db, caller, p["ResourceArn"], list(p["TagKeys"]))
        return {}

    @operation("ListTagsForResource", reads_only=True)
    def list_tags_for_resource(self, caller: Caller, p: Params) -> dict[str, Any]:
        found, token = tags.list_tags(self.rt.db, self.pager, caller, p["ResourceArn"],
                                      max_results=p.get("MaxResults"),
                                      next_token=p.get("NextToken"))
        return _with_token({"Tags": serialize.tags(found)}, token)

    @operation("CreateBackup")
    def create_backup(self, caller: Caller, p: Params) -> dict[str, Any]:
        backup = backups.create_backup(self.rt, caller, server_name=p["ServerName"],
                                       description=p.get("Description"),
                                       tags=_pairs(p.get("Tags"), "Key", "Value"))
        return {"Backup": serialize.backup(backup)}

    @operation("DeleteBackup")
    def delete_backup(self, caller: Caller, p: Params) -> dict[str, Any]:
        backups.delete_backup(self.rt, caller, backup_id=p["BackupId"])
        return {}

    @operation("DescribeBackups", reads_only=True)
    def describe_backups(self, caller: Caller, p: Params) -> dict[str, Any]:
        found, token = backups.describe_backups(
            self.rt, self.pager, caller, backup_id=p.get("BackupId"),
            server_name=p.get("ServerName"), max_results=p.get("MaxResults"),
            next_token=p.get("NextToken"))
        return _with_token({"Backups": [serialize.backup(b) for b in found]}, token)

    @operation("RestoreServer")
    def restore_server(self, caller: Caller, p: Params) -> dict[str, Any]:
        server = restore.restore_server(self.rt, caller, server_name=p["ServerName"],
                                        backup_id=p["BackupId"],
                                        instance_type=p.get("InstanceType"),
                                        key_pair=p.get("KeyPair"))
        return {"Server": serialize.server(server)}

    @operation("StartMaintenance")
    def start_maintenance(self, caller: Caller, p: Params) -> dict[str, Any]:
        server = maintenance.start_maintenance(self.rt, caller, server_name=p["ServerName"],
                                               attributes=_pairs(p.get("EngineAttributes")))
        return {"Server": serialize.server(server)}

    @operation("AssociateNode")
    def associate_node(self, caller: Caller, p: Params) -> dict[str, Any]:
        token = nodes.request_node_action(self.rt, caller, action="associate",
                                          server_name=p["ServerName"], node_name=p["NodeName"],
                                          attributes=_pairs(p.get("EngineAttributes")))
        return {"NodeAssociationStatusToken": token}

    @operation("DisassociateNode")
    def disassociate_node(self, caller: Caller, p: Params) -> dict[str, Any]:
        token = nodes.request_node_action(self.rt, caller, action="disassociate",
                                          server_name=p["ServerName"], node_name=p["NodeName"],
                                          attributes=_pairs(p.get("EngineAttributes")))
        return {"NodeAssociationStatusToken": token}

    @operation("DescribeNodeAssociationStatus", reads_only=True)
    def describe_node_association_status(self, caller: Caller, p: Params) -> dict[str, Any]:
        status = nodes.describe_status(self.rt, caller, server_name=p["ServerName"],
                                       token=p["NodeAssociationStatusToken"])
        return {"NodeAssociationStatus": status.status,
                "EngineAttributes": serialize.attributes(status.attributes)}

    @operation("ExportServerEngineAttribute")
    def export_server_engine_attribute(self, caller: Caller, p: Params) -> dict[str, Any]:
        name, value = engine_attributes.export_attribute(
            self.rt, caller, server_name=p["ServerName"], name=p["ExportAttributeName"],
            inputs=_pairs(p.get("InputAttributes")))
        return {"EngineAttribute": {"Name": name, "Value": value},
                "ServerName": p["ServerName"]}

    @operation("UpdateServerEngineAttributes")
    def update_server_engine_attributes(self, caller: Caller, p: Params) -> dict[str, Any]:
        server, shown = engine_attributes.update_attributes(
            self.rt, caller, server_name=p["ServerName"], name=p["AttributeName"],
            value=p.get("AttributeValue"))
        return {"Server": serialize.server(server, shown)}
