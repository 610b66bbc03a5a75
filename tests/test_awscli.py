"""awscli 1.42.18 drives every operation of the service core against cmhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import SERVER_DEFAULTS, Cmhost

AWS = str(Path(sys.executable).with_name("aws"))


def aws(cm: Cmhost, *args: str, ok: bool = True) -> Any:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": ""}
    proc = subprocess.run([AWS, "opsworks-cm", *args, "--endpoint-url", cm.url,
                           "--output", "json"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    if not ok:
        assert proc.returncode != 0
        return proc.stderr
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.mark.skipif(not Path(AWS).exists(), reason="awscli is installed by `make test`")
def test_awscli_drives_every_core_operation(cmhost: Cmhost) -> None:
    created = aws(cmhost, "create-server", "--server-name", "cli-chef", "--engine", "Chef",
                  "--instance-profile-arn", SERVER_DEFAULTS["InstanceProfileArn"],
                  "--instance-type", "m5.large",
                  "--service-role-arn", SERVER_DEFAULTS["ServiceRoleArn"],
                  "--tags", "Key=stage,Value=test")["Server"]
    assert created["Status"] == "CREATING"
    arn = created["ServerArn"]
    cmhost.advance(120)
    described = aws(cmhost, "describe-servers", "--server-name", "cli-chef")["Servers"]
    assert described[0]["Status"] == "HEALTHY"
    updated = aws(cmhost, "update-server", "--server-name", "cli-chef",
                  "--backup-retention-count", "5", "--preferred-backup-window", "Mon:03:00",
                  "--disable-automated-backup")["Server"]
    assert (updated["BackupRetentionCount"], updated["PreferredBackupWindow"],
            updated["DisableAutomatedBackup"]) == (5, "Mon:03:00", True)
    events = aws(cmhost, "describe-events", "--server-name", "cli-chef")["ServerEvents"]
    assert events[0]["Message"].startswith("Server settings updated")
    attrs = aws(cmhost, "describe-account-attributes")["Attributes"]
    assert {a["Name"]: a["Maximum"] for a in attrs} == {"ServerLimit": 10,
                                                         "ManualBackupLimit": 50}
    aws(cmhost, "tag-resource", "--resource-arn", arn, "--tags", "Key=owner,Value=me")
    aws(cmhost, "untag-resource", "--resource-arn", arn, "--tag-keys", "stage")
    tags = aws(cmhost, "list-tags-for-resource", "--resource-arn", arn)["Tags"]
    assert tags == [{"Key": "owner", "Value": "me"}]
    aws(cmhost, "delete-server", "--server-name", "cli-chef")
    cmhost.advance(60)
    err = aws(cmhost, "describe-servers", "--server-name", "cli-chef", ok=False)
    assert "ResourceNotFoundException" in err
