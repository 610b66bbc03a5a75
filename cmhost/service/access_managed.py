"""The managed policies shipped with cmhost, named as AWS names its own (`--managed NAME` or
its ARN arn:aws:iam::aws:policy/NAME)."""

from __future__ import annotations

import json
from typing import Any

from cmhost.service.policies import Policy, read_policy

ARN_PREFIX = "arn:aws:iam::aws:policy/"


def _document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


DOCUMENTS: dict[str, str] = {
    # Everything OpsWorks CM offers, on every server and backup (AWS's full-access policies
    # also grant what the service needs elsewhere: cmhost has nothing elsewhere).
    "AWSOpsWorksCMFullAccess": _document(
        {"Sid": "OpsWorksCMAll", "Effect": "Allow", "Action": "opsworks-cm:*",
         "Resource": "*"}),
    # Monitoring: every Describe and List operation, nothing that changes anything.
    "AWSOpsWorksCMReadOnlyAccess": _document(
        {"Sid": "OpsWorksCMRead", "Effect": "Allow",
         "Action": ["opsworks-cm:Describe*", "opsworks-cm:List*"], "Resource": "*"}),
    # What a node's user data (or a CI job enrolling nodes) needs: associate and disassociate
    # a node, and follow the association.
    "AWSOpsWorksCMNodeAssociationAccess": _document(
        {"Sid": "OpsWorksCMNodes", "Effect": "Allow",
         "Action": ["opsworks-cm:AssociateNode", "opsworks-cm:DisassociateNode",
                    "opsworks-cm:DescribeNodeAssociationStatus"], "Resource": "*"}),
    # Reading the audit trail (CloudTrail's LookupEvents on cmhost's endpoint).
    "AWSCloudTrail_ReadOnlyAccess": _document(
        {"Sid": "CloudTrailRead", "Effect": "Allow",
         "Action": ["cloudtrail:LookupEvents", "cloudtrail:Get*", "cloudtrail:Describe*",
                    "cloudtrail:List*"], "Resource": "*"}),
}

POLICIES: dict[str, Policy] = {name: read_policy(text, name) for name, text in DOCUMENTS.items()}


def managed_name(given: str) -> str:
    """The managed policy's name from its name or ARN; ValueError naming the shipped ones."""
    name = given.removeprefix(ARN_PREFIX)
    if name not in POLICIES:
        raise ValueError(f"no managed policy {given!r}; cmhost ships: "
                         f"{', '.join(sorted(POLICIES))}")
    return name
