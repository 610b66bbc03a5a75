"""`--log-format json` at debug level through a run that calls every operation: every line is a
JSON object with time, level, logger and message; each request the client made has one
access line with the request id it saw, its account, operation, status and duration; job
steps, and the lines logged inside them, name their job; no secret appears."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cmhost.api.model import SERVICE
from tests.ops.helpers import csr_pem, quiet_windows, settle
from tests.support import SERVER_DEFAULTS, Cmhost, blocked_backup_store

ACCOUNT = "520000000001"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"debug", "info", "warning", "error", "critical"}
# uvicorn's own start and stop lines: it formats them itself until cmhost/listen.py hands
# uvicorn's loggers to cmhost's handler (uvicorn.Config(log_config=None)); nothing else may
# be anything but JSON.
UVICORN_OWN = re.compile(r"^(INFO|WARNING|ERROR|DEBUG):     \S")


class Run:
    """The requests of the run (request id -> operation, status) and the secrets it saw."""

    def __init__(self, host: Cmhost, client: Any, secret_key: str) -> None:
        self.host = host
        self.client = client
        self.requests: dict[str, tuple[str, int]] = {}
        self.secrets: list[str] = [secret_key]

    def call(self, operation: str, **params: Any) -> Any:
        method = getattr(self.client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        try:
            answer = method(**params)
        except ClientError as exc:
            meta = exc.response["ResponseMetadata"]
            self.requests[meta["RequestId"]] = (operation, meta["HTTPStatusCode"])
            raise
        self.requests[answer["ResponseMetadata"]["RequestId"]] = (operation, 200)
        return answer

    def keep_secrets(self, attributes: list[dict[str, str]]) -> None:
        for attribute in attributes:
            name, value = attribute["Name"], attribute["Value"]
            if "PASSWORD" in name:
                self.secrets.append(value)
            elif name.endswith("PIVOTAL_KEY"):  # lines of the private key's body
                body = [ln for ln in value.splitlines() if ln and not ln.startswith("-----")]
                self.secrets += body[1:4]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, list[str]]]:
    host = Cmhost(Path(tmp_path_factory.mktemp("jsonlogs")), extra_args=[
        "--log-format", "json", "--log-level", "debug"]).start()
    try:
        key = json.loads(host.cli("keys", "create", "--account", ACCOUNT,
                                  *host.storage_args()).stdout)
        r = Run(host, host.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"]),
                key["SecretAccessKey"])
        _every_operation(r)
    finally:
        host.stop()
    yield r, host.log_path.read_text().splitlines()


def _every_operation(r: Run) -> None:
    host = r.host
    # The role ARNs name the caller's own account, as a real user's would.
    params = {**{k: v.replace("000000000000", ACCOUNT) for k, v in SERVER_DEFAULTS.items()},
              **quiet_windows(host)}
    chef = r.call("CreateServer", ServerName="js-chef", Engine="ChefAutomate", **params)
    r.keep_secrets(chef["Server"]["EngineAttributes"])
    puppet = r.call("CreateServer", ServerName="js-puppet", Engine="Puppet", **params)
    r.keep_secrets(puppet["Server"]["EngineAttributes"])
    host.advance(61)
    arn = r.call("DescribeServers")["Servers"][0]["ServerArn"]
    r.call("DescribeEvents", ServerName="js-chef")
    r.call("DescribeAccountAttributes")
    r.call("UpdateServer", ServerName="js-chef", BackupRetentionCount=3)
    updated = r.call("UpdateServerEngineAttributes", ServerName="js-chef",
                     AttributeName="CHEF_PIVOTAL_KEY")
    r.keep_secrets(updated["Server"].get("EngineAttributes", []))
    settle(host)
    r.call("ExportServerEngineAttribute", ServerName="js-puppet",
           ExportAttributeName="Userdata")
    r.call("TagResource", ResourceArn=arn, Tags=[{"Key": "team", "Value": "ops"}])
    r.call("ListTagsForResource", ResourceArn=arn)
    r.call("UntagResource", ResourceArn=arn, TagKeys=["team"])
    backup = r.call("CreateBackup", ServerName="js-puppet")["Backup"]["BackupId"]
    settle(host)
    r.call("DescribeBackups", BackupId=backup)
    r.call("RestoreServer", ServerName="js-puppet", BackupId=backup)
    settle(host)
    r.call("StartMaintenance", ServerName="js-puppet")
    settle(host)
    token = r.call("AssociateNode", ServerName="js-puppet", NodeName="js-node",
                   EngineAttributes=[{"Name": "PUPPET_NODE_CSR", "Value": csr_pem("js-node")}]
                   )["NodeAssociationStatusToken"]
    settle(host)
    r.call("DescribeNodeAssociationStatus", ServerName="js-puppet",
           NodeAssociationStatusToken=token)
    r.call("DisassociateNode", ServerName="js-puppet", NodeName="js-node")
    settle(host)
    r.call("DeleteBackup", BackupId=backup)
    settle(host)  # its job done before the blob store is blocked below
    with pytest.raises(ClientError):
        r.call("DeleteServer", ServerName="js-nothing")  # an error has its access line too
    with blocked_backup_store(host, ACCOUNT):  # a step that fails logs inside its job
        r.call("CreateBackup", ServerName="js-chef")
        host.advance(200)  # retried with backoff, then FAILED
    r.call("DeleteServer", ServerName="js-chef")
    host.advance(600)


def _records(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        assert not UVICORN_OWN.match(line), f"uvicorn wrote a line of its own: {line}"
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        out.append(record)
    return out


def test_every_line_is_a_json_object_with_the_common_fields(
        run: tuple[Run, list[str]]) -> None:
    _, lines = run
    records = _records(lines)
    assert len(records) > 40
    for record in records:
        assert TIME.match(record["time"]), record
        assert record["level"] in LEVELS, record
        assert isinstance(record["logger"], str) and record["logger"], record
        assert isinstance(record["message"], str), record
    assert {r["level"] for r in records} >= {"info", "warning"}


def test_each_request_has_its_access_line(run: tuple[Run, list[str]]) -> None:
    r, lines = run
    access = {rec["request_id"]: rec for rec in _records(lines)
              if rec["logger"] == "cmhost.access"}
    assert set(SERVICE.operations) <= {op for op, _ in r.requests.values()}
    for request_id, (operation, status) in r.requests.items():
        line = access[request_id]  # the x-amzn-RequestId the client saw
        assert line["level"] == "info"
        assert (line["account"], line["operation"], line["status"]) == \
            (ACCOUNT, operation, status), line
        assert line["region"] == "us-east-1"
        assert isinstance(line["duration"], float) and 0 <= line["duration"] < 30
        assert (line["error_code"] is None) == (status == 200), line


def test_job_steps_and_what_they_log_name_their_job(run: tuple[Run, list[str]]) -> None:
    _, lines = run
    records = _records(lines)
    steps = [rec for rec in records if rec["logger"] == "cmhost.jobs"]
    kinds = {rec["job_kind"] for rec in steps}
    assert kinds >= {"create_server", "modify", "backup", "restore", "maintenance", "node",
                     "delete_backup", "delete_server"}, kinds
    for rec in steps:
        assert isinstance(rec["job_id"], int) and rec["attempt"] >= 1, rec
        assert rec["step"] and rec["outcome"], rec
        # A backup outlives its server: deleting one is a job of no server.
        assert rec["server_id"] or rec["job_kind"] == "delete_backup", rec
    # The failing backup's steps warned from inside the job: each line names its job.
    inside = [rec for rec in records if rec["logger"] == "cmhost.worker"
              and rec["level"] == "warning" and " failed: " in rec["message"]]
    assert any(rec.get("job_kind") == "backup" for rec in inside), inside
    for rec in inside:
        said = re.match(r"job (\d+) \((\w+)/(\w+)\) failed", rec["message"])
        assert said, rec
        assert (rec["job_id"], rec["job_kind"], rec["step"]) == \
            (int(said[1]), said[2], said[3]), rec
        assert rec["attempt"] >= 1 and "server_id" in rec, rec
    assert not [rec for rec in records if "job_id" in rec
                and rec["logger"] in ("cmhost.access", "cmhost.storage.migrate")]


def test_no_secret_in_the_log(run: tuple[Run, list[str]]) -> None:
    r, lines = run
    assert len(r.secrets) >= 6, r.secrets
    text = "\n".join(lines)
    decoded = "\n".join(json.dumps(rec, ensure_ascii=False) for rec in _records(lines))
    values = "\n".join(str(v) for rec in _records(lines) for v in rec.values())
    for secret in r.secrets:
        assert secret not in text and secret not in decoded and secret not in values, \
            "a secret is in the log"
