"""Every example awscli 1.42.18 documents for this service (awscli/examples/opsworkscm/*.rst),
run against cmhost with awscli itself, its answer compared in structure with the documented
output: a key, a type or a format (ARN, timestamp, sg-/subnet- id, backup id, URL, token)
the documentation shows and cmhost's answer lacks fails the test.

Only what belongs to the documentation's own account is adapted (see `adapt`): its account
ids in ARNs, its backup ids and status token, its organization name and placeholders that
stand for a key. Two more adaptations are forced on any server, and the test shows why: the
two node examples pass both attributes in one string, which awscli itself refuses before
sending anything, and update-server names a maintenance window the model forbids
("MM must be specified as 00"). The create-backup example prints DescribeBackups' shape
(`Backups`), which awscli cannot print for CreateBackup: it is compared as `Backup`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import public_pem
from tests.support import Cmhost
from tests.test_awscli import AWS

pytestmark = pytest.mark.skipif(not Path(AWS).exists(),
                                reason="awscli is installed by `make test`")

# The order a user would run them in; every example of the folder is in it.
ORDER = (
    "describe-account-attributes", "create-server", "start-maintenance", "describe-servers",
    "update-server", "update-server-engine-attributes", "create-backup", "describe-backups",
    "associate-node", "describe-node-association-status", "disassociate-node",
    "describe-events", "restore-server", "delete-backup", "delete-server",
)
ACCOUNT = "000000000000"
# Virtual seconds to let pass after an example, so the next finds the server settled (a
# create takes 60), the node associated, the backup OK.
SETTLE = {"create-server": 61, "start-maintenance": 1, "update-server": 1,
          "update-server-engine-attributes": 1, "create-backup": 1,
          "describe-node-association-status": 1, "disassociate-node": 1, "restore-server": 1}
# Examples that fail as written on any server, and how: awscli refuses the one-string
# attributes before sending anything; the window's minutes are not 00.
FORCED = {
    "associate-node": "Error parsing parameter '--engine-attributes'",
    "disassociate-node": "Error parsing parameter '--engine-attributes'",
    "update-server": "ValidationException",
}
MISSING = object()


def examples_dir() -> Path:
    import awscli

    return Path(awscli.__file__).parent / "examples" / "opsworkscm"


# --- reading an example ------------------------------------------------------------------


def documented_command(text: str) -> tuple[list[str], int]:
    """The example's `aws opsworks-cm ...` command (continuation lines joined) as argv without
    `aws`, and the index of its last line."""
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if line.strip().startswith("aws opsworks-cm "))
    parts = []
    while True:
        line = lines[at].strip()
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            break
        at += 1
    return shlex.split(" ".join(parts))[1:], at


def documented_output(text: str, after: int) -> Any:
    """The first JSON block after the command (None for "(None)" or no block), read leniently:
    the documentation writes bare ISO dates, TRUE/FALSE and trailing commas."""
    lines = text.splitlines()[after + 1:]
    for n, line in enumerate(lines):
        if line.strip() == "(None)":
            return None
        if line.strip().startswith("{"):
            depth, block = 0, []
            for part in lines[n:]:
                block.append(part)
                depth += part.count("{") - part.count("}")
                if depth == 0:
                    break
            body = "\n".join(block)
            body = re.sub(r"(:\s*)(\d{4}-\d\d-\d\dT[\d:.]+Z)", r'\1"\2"', body)
            body = re.sub(r"(:\s*)TRUE\b", r"\1true", body)
            body = re.sub(r"(:\s*)FALSE\b", r"\1false", body)
            return json.loads(re.sub(r",(\s*[}\]])", r"\1", body))
    return None


# --- comparing structures ------------------------------------------------------------------

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)")
ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d*:\S+")
FORMATS: dict[str, re.Pattern[str]] = {
    # what a value shaped like the documented one must look like in cmhost's answer
    "sg-id": re.compile(r"sg-([0-9a-f]{8}|[0-9a-f]{17})"),
    "subnet-id": re.compile(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})"),
    "backup-id": re.compile(r"[a-zA-Z][a-zA-Z0-9-]*-\d{17}"),
    "url": re.compile(r"https?://\S+"),
    "token": re.compile(r"[A-Za-z0-9+/]{16,}={0,2}"),
}


def kind(value: Any, key: str, timestamps: set[str]) -> str:
    """The documented kind of a value: a JSON type, or a string of a recognised format."""
    if isinstance(value, bool):
        return "boolean"
    if key in timestamps and (isinstance(value, (int, float)) or
                              (isinstance(value, str) and ISO.fullmatch(value))):
        return "timestamp"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if not isinstance(value, str):
        return "null"
    if ARN.fullmatch(value):
        return "arn"
    if value.startswith("sg-"):
        return "sg-id"
    if value.startswith("subnet-"):
        return "subnet-id"
    if key == "BackupId":
        return "backup-id"
    if key.endswith("Url"):
        return "url"
    if key.endswith("Token"):
        return "token"
    return "string"


def differences(doc: Any, got: Any, path: str, timestamps: set[str]) -> list[str]:
    """What `doc` (the documented value) has that `got` (cmhost's) lacks: keys, types,
    formats. A documented "" stands for no value (the JSON protocol leaves such members
    out): the key may be absent. A documented list element must be matched by one of ours."""
    key = path.rsplit(".", 1)[-1].split("[")[0]
    want = kind(doc, key, timestamps)
    if got is MISSING:
        return [] if doc == "" else [f"{path}: missing (documented: {want} {doc!r:.60})"]
    have = kind(got, key, timestamps)
    if want == "string" and isinstance(got, str):
        return []
    if want != have:
        return [f"{path}: {have} {got!r:.60} where the documentation has {want} {doc!r:.60}"]
    if want == "timestamp" and not ISO.fullmatch(str(got)):
        return [f"{path}: {got!r} is not an ISO 8601 timestamp"]
    if want in FORMATS and not FORMATS[want].fullmatch(got):
        return [f"{path}: {got!r} is not in the format of {want}s"]
    if want == "object":
        found = []
        for name, value in doc.items():
            found += differences(value, got.get(name, MISSING), f"{path}.{name}", timestamps)
        return found
    if want == "list":
        found = []
        for n, element in enumerate(doc):
            if not got:
                found.append(f"{path}: empty, the documentation has an element {element!r:.80}")
                continue
            tries = [differences(element, mine, f"{path}[{n}]", timestamps) for mine in got]
            if all(tries):
                found += min(tries, key=len)
        return found
    return []


def test_the_comparison_catches_what_issue_14_found() -> None:
    """The comparison itself: a missing key, a missing group, a wrong date or id all fail."""
    doc = {"Server": {"CreatedAt": "2016-07-29T13:38:47.520Z", "SecurityGroupIds": ["sg-1"],
                      "ServerArn": "arn:aws:iam::1019881987024:instance/x", "KeyPair": "",
                      "EngineAttributes": [{"Name": "A", "Value": "b"}]}}
    good = {"Server": {"CreatedAt": "2026-01-01T00:00:00.123000+00:00",
                       "SecurityGroupIds": ["sg-0123456789abcdef0"], "EngineAttributes": [
                           {"Name": "X", "Value": "y"}],
                       "ServerArn": "arn:aws:opsworks-cm:us-east-1:000000000000:server/x/y"}}
    assert differences(doc, good, "", {"CreatedAt"}) == []
    for broken in ({"SecurityGroupIds": []}, {"SecurityGroupIds": MISSING},
                   {"SecurityGroupIds": ["sg-x"]}, {"CreatedAt": 1.5},
                   {"CreatedAt": "yesterday"}, {"ServerArn": "x"}, {"EngineAttributes": []},
                   {"EngineAttributes": [{"Name": "X"}]}):
        server = {k: v for k, v in {**good["Server"], **broken}.items() if v is not MISSING}
        assert differences(doc, {"Server": server}, "", {"CreatedAt"}), broken


# --- running them --------------------------------------------------------------------------


class Cli:
    """awscli 1.42.18 pointed at a cmhost, timestamps printed as ISO 8601."""

    def __init__(self, cmhost: Cmhost, workdir: Path) -> None:
        config = workdir / "aws-config"
        config.write_text("[default]\nregion = us-east-1\ncli_timestamp_format = iso8601\n")
        self.cmhost = cmhost
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_CONFIG_FILE": str(config), "AWS_PAGER": ""}

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AWS, *argv, "--endpoint-url", self.cmhost.url, "--output",
                               "json"], capture_output=True, text=True, env=self.env,
                              timeout=120, check=False)


def adapt(name: str, argv: list[str], state: dict[str, str]) -> list[str]:
    """The example's command with the documentation's own account's names and placeholders
    replaced by ours (nothing else changes)."""
    out = [re.sub(r"^arn:aws:iam::\d+:", f"arn:aws:iam::{ACCOUNT}:", a) for a in argv]
    for flag, value in (("--backup-id", state.get("backup_id")),
                        ("--node-association-status-token", state.get("token"))):
        if flag in out and value:
            out[out.index(flag) + 1] = value
    if "--attribute-value" in out:  # "new key value": a new pivotal public key
        out[out.index("--attribute-value") + 1] = public_pem()
    if "--engine-attributes" in out:
        at = out.index("--engine-attributes") + 1
        given = out[at].replace("'MyOrganization'", "'default'").replace(
            "'Public_key_contents'", f"'{state['node_key']}'")
        out[at:at + 1] = given.split(" Name=", 1)[0], "Name=" + given.split(" Name=", 1)[1]
    if name == "update-server":
        out[out.index("--preferred-maintenance-window") + 1] = "Mon:09:00"
    return out


def documented_examples() -> Iterator[tuple[str, list[str], Any]]:
    for name in ORDER:
        text = (examples_dir() / f"{name}.rst").read_text()
        argv, end = documented_command(text)
        yield name, argv, documented_output(text, end)


def service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("opsworkscm")


def model_timestamps(model: Any) -> set[str]:
    return {member for shape in (model.shape_for(n) for n in model.shape_names)
            if shape.type_name == "structure"
            for member, target in shape.members.items() if target.type_name == "timestamp"}


def test_every_documented_example_answers_as_documented(cmhost: Cmhost,
                                                        tmp_path: Path) -> None:
    assert {p.stem for p in examples_dir().glob("*.rst")} == set(ORDER)
    cli = Cli(cmhost, tmp_path)
    model = service_model()
    timestamps = model_timestamps(model)
    state = {"node_key": public_pem()}
    problems: list[str] = []
    for name, argv, doc in documented_examples():
        if name in FORCED:  # what forces the adaptation, shown with the example as written
            assert FORCED[name] in cli.run(argv).stderr, name
        done = cli.run(adapt(name, argv, state))
        assert done.returncode == 0, f"{name}: {done.stderr}"
        got = json.loads(done.stdout) if done.stdout.strip() else None
        if name == "create-backup":  # awscli prints CreateBackup's output: {"Backup": ...}
            members = model.operation_model("CreateBackup").output_shape.members
            assert "Backups" not in members and "Backup" in members
            doc = {"Backup": doc["Backups"][0]}
            state["backup_id"] = got["Backup"]["BackupId"]
        if name == "associate-node":
            state["token"] = got["NodeAssociationStatusToken"]
        if doc is not None:
            problems += [f"{name}: {p}" for p in differences(doc, got, "", timestamps)]
        if name in SETTLE:
            cmhost.advance(SETTLE[name])
    assert problems == [], "\n".join(problems)
