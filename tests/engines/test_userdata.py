"""The user-data script: syntax, quoting, and real runs against a stubbed AWS CLI and agent."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cmhost.engines import pki
from cmhost.engines.base import EngineFamily, ServerSpec
from cmhost.engines.userdata import render_userdata

from .conftest import make_spec, spki

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("openssl") is None,
    reason="needs bash and openssl",
)

BASH = shutil.which("bash") or "bash"

# Stands in for the AWS CLI: logs its arguments, knows the service by the names in
# FAKE_AWS_KNOWS (awscli 1.42.18 and older: opsworks-cm; a newer one given the model through
# AWS_DATA_PATH: opsworkscm), parses --engine-attributes with the real AWS CLI shorthand
# parser, answers associate-node with a token and signs Puppet CSRs.
FAKE_AWS = """#!{python}
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_STATE"])
args = sys.argv[1:]
with open(state / "aws.log", "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[0] not in os.environ.get("FAKE_AWS_KNOWS", "opsworks-cm").split(","):
    sys.exit("aws: error: argument command: Invalid choice")
if "--generate-cli-skeleton" in args:
    print("{{}}")
    sys.exit(0)
op = args[1]
if op == "associate-node":
    from awscli.shorthand import ShorthandParser
    start = args.index("--engine-attributes") + 1
    attrs = []
    for arg in args[start:]:
        if arg.startswith("--"):
            break
        attrs.append(ShorthandParser().parse(arg))
    node = args[args.index("--node-name") + 1]
    (state / "association.json").write_text(json.dumps({{"node": node, "attrs": attrs}}))
    print("token-1")
elif op == "describe-node-association-status":
    from cmhost.engines import pki
    association = json.loads((state / "association.json").read_text())
    csr = next(a["Value"] for a in association["attrs"] if a["Name"] == "PUPPET_NODE_CSR")
    print(pki.sign_csr((state / "ca.pem").read_text(), (state / "ca.key").read_text(), csr,
                       expected_cn=association["node"]))
"""

# Stands in for chef-client and puppet: logs its arguments; `puppet config ...` runs the real
# puppet when FAKE_REAL_PUPPET names it; a run (chef-client, `puppet agent`) exits with
# FAKE_RUN_EXIT.
FAKE_AGENT = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
log = Path(os.environ["FAKE_STATE"]) / (Path(sys.argv[0]).name + ".log")
with open(log, "a") as handle:
    handle.write(json.dumps(args) + "\\n")
if args[:1] == ["config"] and os.environ.get("FAKE_REAL_PUPPET"):
    os.execv(os.environ["FAKE_REAL_PUPPET"], [os.environ["FAKE_REAL_PUPPET"], *args])
if Path(sys.argv[0]).name == "chef-client" or args[:1] == ["agent"]:
    status = int(os.environ.get("FAKE_RUN_EXIT", "0"))
    if status not in (0, 2):
        print("Error: the run failed", file=sys.stderr)
    sys.exit(status)
"""


class Run:
    """One run of a user-data script in a sandbox."""

    def __init__(self, tmp: Path, ca: tuple[str, str]) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.bin = tmp / "bin"
        self.state.mkdir()
        self.bin.mkdir()
        (self.state / "ca.pem").write_text(ca[0])
        (self.state / "ca.key").write_text(ca[1])
        self._tool("aws", FAKE_AWS.format(python=sys.executable))
        self._tool("chef-client", FAKE_AGENT.format(python=sys.executable))
        self._tool("puppet", FAKE_AGENT.format(python=sys.executable))

    def _tool(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def __call__(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        (self.tmp / "userdata.sh").write_text(script)
        full_env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.tmp),
            "FAKE_STATE": str(self.state),
            "NODE_NAME": "node-1",
            "CHEF_DIR": str(self.tmp / "chef"),
            "PUPPET": str(self.bin / "puppet"),
            "PUPPET_CONFDIR": str(self.tmp / "puppet"),
            "PUPPET_SSLDIR": str(self.tmp / "puppet" / "ssl"),
            **env,
        }
        return subprocess.run(
            [BASH, str(self.tmp / "userdata.sh")],
            env=full_env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def all_aws_calls(self) -> list[list[str]]:
        log = self.state / "aws.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def aws_calls(self) -> list[list[str]]:
        """The calls to the service, without the script's asking which name the CLI knows."""
        return [c for c in self.all_aws_calls() if "--generate-cli-skeleton" not in c]

    def association(self) -> dict[str, Any]:
        return json.loads((self.state / "association.json").read_text())

    def agent_calls(self, name: str) -> list[list[str]]:
        text = (self.state / f"{name}.log").read_text()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def run(tmp_path: Path, ca: tuple[str, str]) -> Run:
    return Run(tmp_path, ca)


def _bash_syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "syntax.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
@pytest.mark.parametrize("api_endpoint", ["http://127.0.0.1:4580", ""])
def test_script_header_and_syntax(
    family: EngineFamily, api_endpoint: str, ca: tuple[str, str], tmp_path: Path
) -> None:
    script = render_userdata(make_spec(family, api_endpoint=api_endpoint), ca_cert_pem=ca[0])
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script.splitlines()[:6]
    assert ("--endpoint-url" in script) == bool(api_endpoint)
    assert "--region us-east-1" in script
    _bash_syntax_ok(script, tmp_path)


def test_chef_script_associates_the_node_and_runs_chef_client(
    run: Run, ca: tuple[str, str]
) -> None:
    hostile_run_list = f"recipe[web]'; touch {run.tmp}/pwned; echo '"
    hostile_env = f"$(touch {run.tmp}/pwned2)`touch {run.tmp}/pwned3`"
    script = render_userdata(
        make_spec("Chef"),
        ca_cert_pem=ca[0],
        run_list=hostile_run_list,
        environment=hostile_env,
        client_version="18.5.0",
    )
    result = run(script)
    assert result.returncode == 0, result.stderr
    assert not list(run.tmp.glob("pwned*"))

    calls = run.aws_calls()
    assert [call[:2] for call in calls] == [
        ["opsworks-cm", "associate-node"],
        ["opsworks-cm", "wait"],
    ]
    associate = calls[0]
    for flag, value in [
        ("--server-name", "MyServer"),
        ("--node-name", "node-1"),
        ("--region", "us-east-1"),
        ("--endpoint-url", "http://127.0.0.1:4580"),
        ("--query", "NodeAssociationStatusToken"),
        ("--output", "text"),
    ]:
        assert associate[associate.index(flag) + 1] == value
    attrs = {a["Name"]: a["Value"] for a in run.association()["attrs"]}
    assert attrs["CHEF_ORGANIZATION"] == "default"
    chef = run.tmp / "chef"
    client_key = serialization.load_pem_private_key((chef / "client.pem").read_bytes(), None)
    assert spki(pki.load_public_key(attrs["CHEF_NODE_PUBLIC_KEY"])) == spki(client_key)
    assert stat.S_IMODE((chef / "client.pem").stat().st_mode) == 0o600
    assert calls[1][2:7] == [
        "node-associated",
        "--server-name",
        "MyServer",
        "--node-association-status-token",
        "token-1",
    ]

    client_rb = (chef / "client.rb").read_text().splitlines()
    endpoint = make_spec("Chef").endpoint
    assert f"chef_server_url 'https://{endpoint}/organizations/default'" in client_rb
    assert "node_name 'node-1'" in client_rb
    assert f"trusted_certs_dir '{chef}/trusted_certs'" in client_rb
    assert (chef / "trusted_certs" / "opsworks-cm-ca.pem").read_text().strip() == ca[0].strip()

    assert run.agent_calls("chef-client") == [
        ["-c", f"{chef}/client.rb", "-r", hostile_run_list, "-E", hostile_env]
    ]


def test_chef_script_without_run_list_runs_plain_chef_client(run: Run, ca: tuple[str, str]) -> None:
    spec = make_spec("Chef", endpoint="chef.local:8443", api_endpoint="")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]))
    assert result.returncode == 0, result.stderr
    assert "--endpoint-url" not in run.aws_calls()[0]
    client_rb = (run.tmp / "chef" / "client.rb").read_text()
    assert "chef_server_url 'https://chef.local:8443/organizations/default'" in client_rb
    assert run.agent_calls("chef-client") == [["-c", f"{run.tmp}/chef/client.rb"]]


def test_hostile_server_name_and_endpoint_stay_data(run: Run, ca: tuple[str, str]) -> None:
    name = f"x'\"; touch {run.tmp}/pwned; $(touch {run.tmp}/pwned2) '@AWS@"
    api = f"http://h/$(touch {run.tmp}/pwned3)"
    spec = make_spec("Chef", name=name, api_endpoint=api, region="us-east-1'; id '")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]))
    assert result.returncode == 0, result.stderr
    assert not list(run.tmp.glob("pwned*"))
    associate = run.aws_calls()[0]
    assert associate[associate.index("--server-name") + 1] == name
    assert associate[associate.index("--endpoint-url") + 1] == api
    assert associate[associate.index("--region") + 1] == "us-east-1'; id '"


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_a_newer_cli_is_called_by_the_models_name(
    run: Run, ca: tuple[str, str], family: EngineFamily
) -> None:
    """A current awscli given the exported model (AWS_DATA_PATH) knows only `opsworkscm`."""
    result = run(render_userdata(make_spec(family), ca_cert_pem=ca[0]), FAKE_AWS_KNOWS="opsworkscm")
    assert result.returncode == 0, result.stderr
    calls = run.aws_calls()
    assert calls and {call[0] for call in calls} == {"opsworkscm"}
    assert [call[1] for call in calls][:2] == ["associate-node", "wait"]
    # asked once per name, each without a request to the service
    assert [c[:2] for c in run.all_aws_calls() if "--generate-cli-skeleton" in c] == [
        ["opsworks-cm", "describe-servers"],
        ["opsworkscm", "describe-servers"],
    ]


def test_a_cli_without_the_service_is_reported(run: Run, ca: tuple[str, str]) -> None:
    result = run(render_userdata(make_spec("Chef"), ca_cert_pem=ca[0]), FAKE_AWS_KNOWS="s3")
    assert result.returncode != 0
    assert "knows neither 'aws opsworks-cm' nor 'aws opsworkscm'" in result.stderr
    assert "AWS_DATA_PATH" in result.stderr
    assert run.aws_calls() == []


def test_bad_node_name_stops_before_associating(run: Run, ca: tuple[str, str]) -> None:
    result = run(render_userdata(make_spec("Chef"), ca_cert_pem=ca[0]), NODE_NAME="bad name;x")
    assert result.returncode != 0
    assert "node name" in result.stderr
    assert run.aws_calls() == []


def test_missing_aws_cli_is_reported(run: Run, ca: tuple[str, str]) -> None:
    only_openssl = run.tmp / "only-openssl"
    only_openssl.mkdir()
    (only_openssl / "openssl").symlink_to(shutil.which("openssl") or "openssl")
    script = render_userdata(make_spec("Puppet"), ca_cert_pem=ca[0])
    result = run(script, PATH=str(only_openssl), CMHOST_SKIP_INSTALL="1")
    assert result.returncode != 0
    assert "AWS CLI (aws) is needed" in result.stderr


def _config_sets(run: Run) -> list[list[str]]:
    return [c for c in run.agent_calls("puppet") if c[:2] == ["config", "set"]]


def test_puppet_script_installs_a_signed_certificate(run: Run, ca: tuple[str, str]) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8141")
    result = run(render_userdata(spec, ca_cert_pem=ca[0], run_list="ignored"))
    assert result.returncode == 0, result.stderr

    calls = run.aws_calls()
    assert [call[1] for call in calls] == [
        "associate-node",
        "wait",
        "describe-node-association-status",
    ]
    describe = calls[2]
    assert describe[describe.index("--query") + 1] == (
        "EngineAttributes[?Name=='PUPPET_NODE_CERT'].Value"
    )
    ssl = run.tmp / "puppet" / "ssl"
    cert_pem = (ssl / "certs" / "node-1.pem").read_text()
    assert pki.verify_chain(cert_pem, ca[0])
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-1"
    key = serialization.load_pem_private_key(
        (ssl / "private_keys" / "node-1.pem").read_bytes(), None
    )
    assert spki(key) == spki(cert)
    assert (ssl / "certs" / "ca.pem").read_text().strip() == ca[0].strip()

    # The settings it owns are set through `puppet config set`, in the given confdir; the
    # puppet this fake stands for knows no serverport, so the port is masterport.
    flags = ["--confdir", str(run.tmp / "puppet"), "--ssldir", str(ssl)]
    assert _config_sets(run) == [
        ["config", "set", *flags, "--section", "main", name, value]
        for name, value in [
            ("certname", "node-1"),
            ("server", "puppet.example.com"),
            ("ca_server", "puppet.example.com"),
            ("masterport", "8141"),
            ("ssldir", str(ssl)),
        ]
    ]
    # The agent runs with the given confdir and ssldir; the system's puppet service, which
    # reads another confdir, is not started.
    puppet_calls = run.agent_calls("puppet")
    agent = next(c for c in puppet_calls if c[0] == "agent")
    assert agent[1:5] == flags and "--detailed-exitcodes" in agent
    assert not [c for c in puppet_calls if c[0] == "resource"]
    assert "not starting the puppet service" in result.stderr


@pytest.mark.parametrize("status", [1, 4, 6])
def test_a_failed_puppet_agent_run_fails_the_script(
    run: Run, ca: tuple[str, str], status: int
) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8141")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]), FAKE_RUN_EXIT=str(status))
    assert result.returncode != 0
    assert (
        f"the first puppet agent run against puppet.example.com:8141 failed "
        f"(exit status {status})" in result.stderr
    )
    assert "node-1 is associated" in result.stderr
    assert not [c for c in run.agent_calls("puppet") if c[0] == "resource"]


def test_a_puppet_agent_run_that_applied_changes_succeeds(
    run: Run, ca: tuple[str, str]
) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8141")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]), FAKE_RUN_EXIT="2")
    assert result.returncode == 0, result.stderr


def test_the_system_confdir_gets_the_puppet_service(run: Run, ca: tuple[str, str]) -> None:
    """Without PUPPET_CONFDIR the script uses the system's confdir, whose service it starts."""
    confdir = run.tmp / "puppet"
    fake = run.bin / "puppet"
    fake.write_text(fake.read_text().replace(
        "args = sys.argv[1:]\n",
        f"args = sys.argv[1:]\nif args == ['config', 'print', 'confdir']: print({str(confdir)!r})\n",
    ))
    spec = make_spec("Puppet", endpoint="puppet.example.com:8141")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]), PUPPET_CONFDIR="", PUPPET_SSLDIR="")
    assert result.returncode == 0, result.stderr
    calls = run.agent_calls("puppet")
    assert calls[-1] == ["resource", "service", "puppet", "ensure=running", "enable=true"]
    assert all(c[1:3] == ["--confdir", str(confdir)] for c in calls if c[0] == "agent")
    # no ssldir was given: it is the confdir's default, and not written to puppet.conf
    assert (confdir / "ssl" / "certs" / "node-1.pem").exists()
    assert "ssldir" not in [c[-2] for c in _config_sets(run)]


REAL_PUPPET = shutil.which("puppet")


@pytest.mark.skipif(REAL_PUPPET is None, reason="needs puppet (apt-get install puppet-agent)")
def test_puppet_conf_keeps_what_the_script_does_not_own(run: Run, ca: tuple[str, str]) -> None:
    confdir = run.tmp / "puppet"
    confdir.mkdir()
    (confdir / "puppet.conf").write_text(
        "# written by hand\n[main]\nlogdir = /var/log/mine\nserver = old.example.com\n"
        "[agent]\nruninterval = 1h\nserver = older.example.com\n"
    )
    spec = make_spec("Puppet", endpoint="puppet.example.com:8141")
    result = run(render_userdata(spec, ca_cert_pem=ca[0]), FAKE_REAL_PUPPET=str(REAL_PUPPET))
    assert result.returncode == 0, result.stderr
    conf = (confdir / "puppet.conf").read_text()
    for kept in ("# written by hand", "logdir = /var/log/mine", "runinterval = 1h"):
        assert kept in conf
    assert "old.example.com" not in conf and "older.example.com" not in conf
    printed = subprocess.run(
        [str(REAL_PUPPET), "config", "print", "--confdir", str(confdir), "--section", "agent",
         "server", "ca_server", "serverport", "certname", "ssldir"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()
    assert printed == [
        "ca_server = puppet.example.com",
        "certname = node-1",
        "server = puppet.example.com",
        "serverport = 8141",
        f"ssldir = {confdir / 'ssl'}",
    ]


def test_chef_client_download_failure_says_what_failed_and_how_to_skip(
    run: Run, ca: tuple[str, str]
) -> None:
    (run.bin / "chef-client").unlink()
    url = "http://127.0.0.1:9/install.sh"  # the discard port: nothing listens
    result = run(render_userdata(make_spec("Chef"), ca_cert_pem=ca[0]), CHEF_INSTALL_URL=url,
                 CHEF_CLIENT="chef-client")
    assert result.returncode != 0
    assert f"could not download the chef-client installer from {url}" in result.stderr
    assert "CMHOST_SKIP_INSTALL=1" in result.stderr
    assert run.aws_calls() == []


def test_skipped_install_without_chef_client_says_what_to_do(
    run: Run, ca: tuple[str, str]
) -> None:
    (run.bin / "chef-client").unlink()
    result = run(render_userdata(make_spec("Chef"), ca_cert_pem=ca[0]),
                 CHEF_CLIENT="chef-client", CMHOST_SKIP_INSTALL="1")
    assert result.returncode != 0
    assert "chef-client (chef-client) is not installed; node node-1 is associated" in (
        result.stderr)


def test_a_failed_chef_client_run_fails_the_script(run: Run, ca: tuple[str, str]) -> None:
    result = run(render_userdata(make_spec("Chef"), ca_cert_pem=ca[0]), FAKE_RUN_EXIT="1")
    assert result.returncode != 0
    assert "the first chef-client run failed (exit status 1)" in result.stderr


def test_the_first_agent_run_can_be_skipped(run: Run, ca: tuple[str, str]) -> None:
    result = run(render_userdata(make_spec("Puppet"), ca_cert_pem=ca[0]),
                 CMHOST_SKIP_AGENT_RUN="1", FAKE_RUN_EXIT="1")
    assert result.returncode == 0, result.stderr
    assert not [c for c in run.agent_calls("puppet") if c[0] == "agent"]
    assert "not running the puppet agent (CMHOST_SKIP_AGENT_RUN=1)" in result.stderr


def test_chef_options_are_validated(ca: tuple[str, str]) -> None:
    spec: ServerSpec = make_spec("Chef")
    with pytest.raises(ValueError, match="OrganizationName"):
        render_userdata(spec, ca_cert_pem=ca[0], organization="Default,Value=x")
    with pytest.raises(ValueError, match="NodeClientVersion"):
        render_userdata(spec, ca_cert_pem=ca[0], client_version="latest; rm -rf /")
    with pytest.raises(ValueError, match="endpoint"):
        render_userdata(make_spec("Chef", endpoint="a b\nc"), ca_cert_pem=ca[0])
