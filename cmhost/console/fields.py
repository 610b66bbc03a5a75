"""Forms to operation parameters, and an operation's error back to the fields it names.

A form field is named after the wire member it fills (ServerName, PreferredBackupWindow;
EngineAttributes.<NAME> for one engine attribute), so an error that names a member (the
validator's "at 'preferredBackupWindow'", the service's "CustomPrivateKey must ...") finds
its field without the console knowing any rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmhost.api.model import SERVICE
from cmhost.console.http import Form

_SUMMARY = re.compile(r"\d+ validation errors? detected: (.*)", re.DOTALL)
_QUOTED = re.compile(r"'([^']+)'")
_PATH = re.compile(r"at '([A-Za-z]+)(?:\.(\d+)\.member)?")

# The engine attributes CreateServer takes, per engine family, with what each is.
ENGINE_ATTRIBUTES: dict[str, list[tuple[str, str]]] = {
    "Chef": [
        ("CHEF_PIVOTAL_KEY", ("The public half of an RSA key (PEM, 2048 bits or more) for the "
         "pivotal user. Leave empty and the server makes a key pair: its private key is then "
         "in the starter kit and shown once.")),
        ("CHEF_DELIVERY_ADMIN_PASSWORD", ("The password of 'admin' in the server's dashboard: 8 "
         "to 32 characters with a lower-case and an upper-case letter, a digit and one of "
         "!/@#$%^&+=_. Leave empty and one is generated and shown once.")),
    ],
    "Puppet": [
        ("PUPPET_ADMIN_PASSWORD", ("The password of 'admin' in the server's dashboard: 8 to "
         "32 printable ASCII characters. Leave empty and one is generated and shown once.")),
        ("PUPPET_R10K_REMOTE", "The r10k control repository (a git URL)."),
        ("PUPPET_R10K_PRIVATE_KEY", "An SSH private key (PEM) for a private r10k remote."),
    ],
}


@dataclass
class FieldErrors:
    """An operation's error, split onto the form's fields; `general` holds the rest."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)


def split_errors(message: str, fields: Iterable[str],
                 indexed: dict[str, Sequence[str]] | None = None,
                 given: dict[str, Any] | None = None) -> FieldErrors:
    """Each violation of `message` on the field it names. `indexed` maps a list member to the
    form fields its elements came from, in order (EngineAttributes.1 is the first sent);
    `given` holds the values sent, for messages that name a value rather than its member
    ("A server with the name 'web' already exists", "The backup 'b-1' is of a ...")."""
    names = sorted(set(fields))
    lowered = {n[:1].lower() + n[1:]: n for n in names}
    found = FieldErrors()
    summary = _SUMMARY.fullmatch(message)
    by_value = {str(v): k for k, v in (given or {}).items()
                if isinstance(v, str) and len(v) >= 3 and k in names}
    for part in summary.group(1).split("; ") if summary else [message]:
        target = _field_of(part, names, lowered, indexed or {})
        if target is None:
            target = next((by_value[q] for q in _QUOTED.findall(part) if q in by_value), None)
        if target is None:
            found.general.append(part)
        else:
            found.by_field.setdefault(target, []).append(part)
    return found


def _field_of(part: str, names: list[str], lowered: dict[str, str],
              indexed: dict[str, Sequence[str]]) -> str | None:
    match = _PATH.search(part)
    if match and match.group(1) in lowered:
        member = lowered[match.group(1)]
        elements = indexed.get(member)
        if elements and match.group(2) and 0 < int(match.group(2)) <= len(elements):
            return elements[int(match.group(2)) - 1]
        return member
    # The member the message names first ("CustomPrivateKey does not match ... of
    # CustomCertificate" is about the key); whole words only, so Engine is not EngineVersion.
    best: tuple[int, str] | None = None
    for name in names:
        short = name.rsplit(".", 1)[-1]
        found = re.search(rf"(?<![A-Za-z_]){re.escape(short)}(?![A-Za-z_])", part)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), name)
    return best[1] if best else None


def operation_fields(name: str) -> list[str]:
    return [m.name for m in SERVICE.operations[name].input.members]


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


def _integer(value: str | None) -> Any:
    """An integer when the text is one; the text itself otherwise (the validator says why)."""
    if value is None:
        return None
    return int(value) if re.fullmatch(r"-?[0-9]{1,12}", value) else value


def parse_tags(text: str | None) -> list[dict[str, str]]:
    """`key=value` lines (a line without '=' is a key with an empty value)."""
    tags = []
    for line in (text or "").splitlines():
        if line.strip():
            key, _, value = line.partition("=")
            tags.append({"Key": key.strip(), "Value": value.strip()})
    return tags


def create_server_params(form: Form) -> tuple[dict[str, Any], list[str]]:
    """CreateServer's parameters from the create form, and the form field each engine
    attribute came from (in the order they are sent)."""
    params: dict[str, Any] = {}
    for name in ("ServerName", "Engine", "EngineModel", "EngineVersion", "InstanceType",
                 "InstanceProfileArn", "ServiceRoleArn", "KeyPair", "PreferredBackupWindow",
                 "PreferredMaintenanceWindow", "CustomDomain", "BackupId"):
        value = form.text(name)
        if value is not None:
            params[name] = value
    for name in ("CustomCertificate", "CustomPrivateKey"):
        value = form.text_or_file(name)
        if value is not None:
            params[name] = value
    params["AssociatePublicIpAddress"] = form.checked("AssociatePublicIpAddress")
    params["DisableAutomatedBackup"] = form.checked("DisableAutomatedBackup")
    retention = _integer(form.text("BackupRetentionCount"))
    if retention is not None:
        params["BackupRetentionCount"] = retention
    for name in ("SecurityGroupIds", "SubnetIds"):
        values = _csv(form.text(name))
        if values:
            params[name] = values
    tags = parse_tags(form.get("Tags"))
    if tags:
        params["Tags"] = tags
    attributes, sources = [], []
    for family in ENGINE_ATTRIBUTES.values():
        for attribute, _ in family:
            source = f"EngineAttributes.{attribute}"
            value = form.text_or_file(source)
            if value is not None:
                attributes.append({"Name": attribute, "Value": value})
                sources.append(source)
    if attributes:
        params["EngineAttributes"] = attributes
    return params, sources


def update_server_params(server_name: str, form: Form) -> dict[str, Any]:
    params: dict[str, Any] = {"ServerName": server_name,
                              "DisableAutomatedBackup": form.checked("DisableAutomatedBackup")}
    for name in ("PreferredBackupWindow", "PreferredMaintenanceWindow"):
        value = form.text(name)
        if value is not None:
            params[name] = value
    retention = _integer(form.text("BackupRetentionCount"))
    if retention is not None:
        params["BackupRetentionCount"] = retention
    return params


def userdata_params(server_name: str, form: Form) -> dict[str, Any]:
    inputs = [{"Name": name, "Value": value} for name in
              ("RunList", "OrganizationName", "NodeEnvironment", "NodeClientVersion")
              if (value := form.text(name)) is not None]
    params: dict[str, Any] = {"ServerName": server_name, "ExportAttributeName": "Userdata"}
    if inputs:
        params["InputAttributes"] = inputs
    return params
