"""The exported user data, run: with a stub `aws` that records its calls, through awscli
1.42.18 itself, and through a current awscli (which no longer ships the service and knows it
as `opsworkscm` from the exported model in AWS_DATA_PATH), against this cmhost (chef-client
and puppet are always stubs)."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.ops.helpers import (
    assert_issued_by,
    attribute,
    common_name,
    disassociate,
    healthy_server,
    load_cert,
    rsa_key,
    server,
)
from tests.support import Cmhost

REAL_AWS = Path(sys.executable).with_name("aws")
# The newest awscli from PyPI lives in a venv of its own, reused across runs for a week.
CURRENT_AWSCLI = Path(os.environ.get("CMHOST_TEST_AWSCLI_VENV") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cmhost-tests" / "awscli")
CURRENT_MAX_AGE = 7 * 86400
OFFLINE = ("NewConnectionError", "Could not fetch URL", "No matching distribution found",
           "Temporary failure in name resolution", "Max retries exceeded",
           "Network is unreachable", "ConnectTimeout")
TOKEN = "c3R1Yi10b2tlbi0xMjM="
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo

# Records argv as a JSON line; answers like awscli would (fake mode) or runs the real awscli
# (real mode), first letting cmhost work the association so `wait` polls only once.
STUB = textwrap.dedent("""\
    #!{python}
    import json, os, sys, urllib.request
    args = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if os.environ.get("STUB_MODE") == "real":
        if "wait" in args:
            req = urllib.request.Request(os.environ["CMHOST_URL"] + "/_cmhost/clock",
                                         data=b'{{"advance": 1}}', method="POST",
                                         headers={{"Content-Type": "application/json"}})
            urllib.request.urlopen(req, timeout=60).read()
        os.execv(os.environ["REAL_AWS"], [os.environ["REAL_AWS"], *args])
    if "associate-node" in args:
        print(os.environ["STUB_TOKEN"])
    elif "describe-node-association-status" in args:
        print(open(os.environ["STUB_CERT"]).read().strip())
    """)
RECORDER = "#!/bin/bash\nprintf '%s\\n' \"$*\" >> \"$RECORD\"\n"


@pytest.fixture(scope="module")
def servers(cmhost: Cmhost, client: Any) -> dict[str, dict[str, Any]]:
    healthy_server(cmhost, client, "ud-chef")
    healthy_server(cmhost, client, "ud-puppet", "Puppet")
    return {"Chef": server(client, "ud-chef"), "Puppet": server(client, "ud-puppet")}


def _self_signed(node: str) -> str:
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)])
    start = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _run(cmhost: Cmhost, client: Any, name: str, tmp: Path, mode: str, node: str,
         inputs: dict[str, str], *, aws: Path = REAL_AWS, data_path: Path | None = None,
         ) -> tuple[list[list[str]], dict[str, str]]:
    value = client.export_server_engine_attribute(
        ServerName=name, ExportAttributeName="Userdata",
        InputAttributes=[{"Name": k, "Value": v} for k, v in inputs.items()])[
        "EngineAttribute"]["Value"]
    script = tmp / "userdata.sh"
    script.write_bytes(base64.b64decode(value))
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(STUB.format(python=sys.executable))
    for tool in ("aws", "chef-client", "puppet"):
        if tool != "aws":
            (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    (tmp / "cert.pem").write_text(_self_signed(node))
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp),
        "STUB_LOG": str(tmp / "aws.jsonl"), "STUB_MODE": mode, "STUB_TOKEN": TOKEN,
        "STUB_CERT": str(tmp / "cert.pem"), "REAL_AWS": str(aws), "CMHOST_URL": cmhost.url,
        "RECORD": str(tmp / "agent.log"), "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_PAGER": "",
        "NODE_NAME": node, "CMHOST_SKIP_INSTALL": "1",
        "CHEF_DIR": str(tmp / "chef"), "CHEF_CLIENT": str(bin_dir / "chef-client"),
        "PUPPET": str(bin_dir / "puppet"), "PUPPET_CONFDIR": str(tmp / "puppet"),
        "PUPPET_SSLDIR": str(tmp / "puppet" / "ssl"),
        **({"AWS_DATA_PATH": str(data_path)} if data_path else {}),
    }
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp / "aws.jsonl").read_text().splitlines()]
    return calls, env


def _flags(call: list[str]) -> dict[str, str]:
    """--flag value pairs of a recorded aws call (a flag with several values keeps the last)."""
    return {a: b for a, b in itertools.pairwise(call) if a.startswith("--")}


def _common(calls: list[list[str]], cmhost: Cmhost, name: str, node: str, mode: str,
            service: str = "opsworks-cm") -> tuple[list[str], str]:
    calls = [c for c in calls if "--generate-cli-skeleton" not in c]  # which name it knows
    assert {c[0] for c in calls} == {service}
    associate = next(c for c in calls if c[:2] == [service, "associate-node"])
    flags = _flags(associate)
    assert (flags["--server-name"], flags["--node-name"]) == (name, node)
    assert (flags["--region"], flags["--endpoint-url"]) == ("us-east-1", cmhost.url)
    wait = next(c for c in calls if c[:3] == [service, "wait", "node-associated"])
    token = _flags(wait)["--node-association-status-token"]
    if mode == "fake":
        assert token == TOKEN
    assert _flags(wait)["--server-name"] == name
    assert calls.index(associate) < calls.index(wait)
    attrs = associate[associate.index("--engine-attributes") + 1:]
    attrs = attrs[:next(i for i, a in enumerate(attrs) if a.startswith("--"))]
    return attrs, token


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_chef_userdata_associates_the_node(cmhost: Cmhost, client: Any, servers: Any,
                                           tmp_path: Path, mode: str) -> None:
    if mode == "real" and not REAL_AWS.exists():
        pytest.skip("awscli is installed by `make test`")
    node = f"chef-node-{mode}"
    calls, env = _run(cmhost, client, "ud-chef", tmp_path, mode, node,
                      {"RunList": "recipe[nginx]", "NodeEnvironment": "staging"})
    attrs, _ = _common(calls, cmhost, "ud-chef", node, mode)
    assert attrs[0] == "Name=CHEF_ORGANIZATION,Value=default"
    assert attrs[1].startswith("Name=CHEF_NODE_PUBLIC_KEY,Value=")
    sent = serialization.load_pem_public_key(attrs[1].split("Value=", 1)[1].encode())
    private = serialization.load_pem_private_key(
        (Path(env["CHEF_DIR"]) / "client.pem").read_bytes(), None)
    assert sent.public_bytes(serialization.Encoding.DER, SPKI) == \
        private.public_key().public_bytes(serialization.Encoding.DER, SPKI)

    client_rb = (Path(env["CHEF_DIR"]) / "client.rb").read_text()
    endpoint = servers["Chef"]["Endpoint"]
    assert f"chef_server_url 'https://{endpoint}/organizations/default'" in client_rb
    assert f"node_name '{node}'" in client_rb
    agent = (tmp_path / "agent.log").read_text()
    assert f"-c {env['CHEF_DIR']}/client.rb -r recipe[nginx] -E staging" in agent
    if mode == "real":  # the server now knows the node
        gone = disassociate(cmhost, client, "ud-chef", node,
                            [{"Name": "CHEF_ORGANIZATION", "Value": "default"}])
        assert gone["NodeAssociationStatus"] == "SUCCESS"


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_puppet_userdata_installs_the_signed_certificate(cmhost: Cmhost, client: Any,
                                                         servers: Any, tmp_path: Path,
                                                         mode: str) -> None:
    if mode == "real" and not REAL_AWS.exists():
        pytest.skip("awscli is installed by `make test`")
    node = f"puppet-node-{mode}"
    calls, env = _run(cmhost, client, "ud-puppet", tmp_path, mode, node, {})
    attrs, token = _common(calls, cmhost, "ud-puppet", node, mode)
    assert len(attrs) == 1 and attrs[0].startswith("Name=PUPPET_NODE_CSR,Value=")
    csr = x509.load_pem_x509_csr(attrs[0].split("Value=", 1)[1].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
    describe = next(c for c in calls if c[:2] == ["opsworks-cm",
                                                    "describe-node-association-status"])
    assert _flags(describe)["--node-association-status-token"] == token

    ssl = Path(env["PUPPET_SSLDIR"])
    installed = (ssl / "certs" / f"{node}.pem").read_text()
    ca_pem = attribute(servers["Puppet"]["EngineAttributes"], "PUPPET_API_CA_CERT") or ""
    assert (ssl / "certs" / "ca.pem").read_text().strip() == ca_pem.strip()
    key = serialization.load_pem_private_key((ssl / "private_keys" / f"{node}.pem").read_bytes(),
                                             None)
    assert csr.public_key().public_bytes(serialization.Encoding.DER, SPKI) == \
        key.public_key().public_bytes(serialization.Encoding.DER, SPKI)
    if mode == "fake":
        assert installed.strip() == (tmp_path / "cert.pem").read_text().strip()
    else:
        cert = load_cert(installed)
        assert_issued_by(cert, load_cert(ca_pem))
        assert common_name(cert) == node
    # puppet.conf is changed through `puppet config set` in the given confdir, and the agent
    # runs with that confdir and ssldir; the system's puppet service is left alone.
    flags = f"--confdir {env['PUPPET_CONFDIR']} --ssldir {env['PUPPET_SSLDIR']}"
    agent = (tmp_path / "agent.log").read_text().splitlines()
    host = servers["Puppet"]["Endpoint"].rsplit(":", 1)[0]
    sets = [line for line in agent if line.startswith("config set")]
    assert f"config set {flags} --section main certname {node}" in sets
    assert f"config set {flags} --section main server {host}" in sets
    runs = [line for line in agent if line.startswith("agent")]
    assert len(runs) == 1 and runs[0].startswith(f"agent {flags} --onetime")
    assert not [line for line in agent if line.startswith("resource")]


# --- a current awscli ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def current_aws() -> Iterator[Path]:
    """`aws` of the newest awscli on PyPI (installed with pip, or reused if installed in the
    last week); skips only when PyPI cannot be reached."""
    CURRENT_AWSCLI.parent.mkdir(parents=True, exist_ok=True)
    stamp, aws = CURRENT_AWSCLI / "installed-at", CURRENT_AWSCLI / "bin" / "aws"
    with open(CURRENT_AWSCLI.parent / "awscli.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < CURRENT_MAX_AGE
        if not (fresh and aws.exists()):
            shutil.rmtree(CURRENT_AWSCLI, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(CURRENT_AWSCLI)], check=True,
                           timeout=300)
            pip = subprocess.run([str(CURRENT_AWSCLI / "bin" / "python"), "-m", "pip",
                                  "install", "-q", "--upgrade", "awscli"],
                                 capture_output=True, text=True, timeout=900, check=False)
            if pip.returncode != 0:
                shutil.rmtree(CURRENT_AWSCLI, ignore_errors=True)
                if any(sign in pip.stderr for sign in OFFLINE):
                    pytest.skip("PyPI cannot be reached to install a current awscli: "
                                + pip.stderr.strip()[-300:])
                pytest.fail(f"pip install awscli failed:\n{pip.stderr}")
            stamp.write_text(f"{time.time()}\n")
    yield aws


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_userdata_with_a_current_awscli(cmhost: Cmhost, client: Any, servers: Any,
                                        tmp_path: Path, current_aws: Path, family: str) -> None:
    env = {**os.environ, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE":
           "/dev/null"}
    # A current awscli no longer ships the service...
    bare = subprocess.run([str(current_aws), "opsworkscm", "describe-servers",
                           "--generate-cli-skeleton"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert bare.returncode != 0 and "Invalid choice" in bare.stderr, bare.stderr
    # ...but knows it, by the model's name, from the model cmhost exports.
    model = tmp_path / "model"
    subprocess.run([sys.executable, "-m", "cmhost", "model", "export", str(model)],
                   capture_output=True, check=True, timeout=120)
    name, node = ("ud-chef", "chef-node-current") if family == "Chef" else (
        "ud-puppet", "puppet-node-current")
    calls, run_env = _run(cmhost, client, name, tmp_path, "real", node, {}, aws=current_aws,
                          data_path=model)
    _, token = _common(calls, cmhost, name, node, "real", service="opsworkscm")
    status = client.describe_node_association_status(ServerName=name,
                                                     NodeAssociationStatusToken=token)
    assert status["NodeAssociationStatus"] == "SUCCESS"
    if family == "Chef":
        assert f"node_name '{node}'" in (Path(run_env["CHEF_DIR"]) / "client.rb").read_text()
        gone = disassociate(cmhost, client, name, node,
                            [{"Name": "CHEF_ORGANIZATION", "Value": "default"}])
        assert gone["NodeAssociationStatus"] == "SUCCESS"
    else:
        ca_pem = attribute(servers["Puppet"]["EngineAttributes"], "PUPPET_API_CA_CERT") or ""
        installed = Path(run_env["PUPPET_SSLDIR"]) / "certs" / f"{node}.pem"
        cert = load_cert(installed.read_text())
        assert_issued_by(cert, load_cert(ca_pem))
        assert common_name(cert) == node
