"""`cmhost model export` lets an SDK call cmhost through AWS_DATA_PATH, using our model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import Cmhost

SCRIPT = r"""
import json, sys, boto3
session = boto3.session.Session()
loader = session._session.get_component("data_loader")
_, path = loader.load_data_with_path("opsworkscm/2016-11-01/service-2")
client = session.client("opsworkscm", region_name="us-east-1", endpoint_url=sys.argv[1],
                        aws_access_key_id="test", aws_secret_access_key="test")
server = client.create_server(
    ServerName="from-exported-model", Engine="Puppet", InstanceType="m5.large",
    InstanceProfileArn="arn:aws:iam::000000000000:instance-profile/x",
    ServiceRoleArn="arn:aws:iam::000000000000:role/x")["Server"]
print(json.dumps({
    "path": path,
    "status": server["Status"],
    "names": [s["ServerName"] for s in client.describe_servers()["Servers"]],
    "paginate": client.can_paginate("describe_events"),
    "waiters": client.waiter_names,
}))
"""


def test_exported_model_through_aws_data_path(cmhost: Cmhost, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cmhost", "model", "export", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    service_file = tmp_path / "opsworkscm" / "2016-11-01" / "service-2.json"
    assert str(service_file) in out.stdout
    assert json.loads(service_file.read_text())["metadata"]["signingName"] == "opsworks-cm"

    env = {**os.environ, "AWS_DATA_PATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SCRIPT, cmhost.url], capture_output=True,
                         text=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    # The SDK loaded OUR model (AWS_DATA_PATH comes before its built-in data) and worked.
    assert Path(result["path"] + ".json").resolve() == service_file.resolve()
    assert result["status"] == "CREATING"
    assert "from-exported-model" in result["names"]
    assert result["paginate"] is True
    assert result["waiters"] == ["node_associated"]
