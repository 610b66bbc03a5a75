"""Code deployment on a real puppetserver (issue 15, "Code deployment"), via boto3 and the
Code Manager API the starter kit points at.

One Puppet server, created with PUPPET_R10K_REMOTE an ssh:// control repository served by a
local sshd and PUPPET_R10K_PRIVATE_KEY the key that sshd lets in; the repository has two
branches and a Puppetfile module from a second, local (file://) repository. The tests run in
order and share it: the provisioning deployment, a real `puppet agent` applying the control
repository's class, a push deployed by the webhook and by the deploys endpoint with wait, a
bad token refused, a broken Puppetfile reported while the old code is still served, and a
backup's code brought back by RestoreServer. A second server, with a file:// remote, shows
its provisioning deployment through its own Code Manager while its puppetserver starts.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import ssl
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engines.git_repos import Repos, Sshd, git, have_tools, site_pp
from tests.ops.helpers import (
    attribute,
    backup_now,
    events,
    quiet_windows,
    server,
    server_id,
    settle,
)
from tests.real_engines.test_puppetserver import Agent, serves, wait_for
from tests.support import Cmhost, create_server

if have_tools():
    pytest.skip(have_tools(), allow_module_level=True)

NAME = "puppet-code"
LOCAL = "puppet-code-local"
PROVISIONING = 600
START_TIMEOUT = 600.0
NODE = "web1.example.com"


@dataclass
class Kit:
    """What a user takes from the starter kit: the CA, the Code Manager's URL and token."""

    ca: str
    url: str
    token: str

    @property
    def host_port(self) -> tuple[str, int]:
        netloc = self.url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = netloc.rpartition(":")
        return host, int(port)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = "kit",
             ) -> tuple[int, Any]:
        """A request to the Code Manager (path below /code-manager), as curl would send it."""
        host, port = self.host_port
        connection = http.client.HTTPSConnection(
            host, port, context=ssl.create_default_context(cadata=self.ca), timeout=300)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Authentication"] = self.token if token == "kit" else token
        try:
            connection.request(method, f"/code-manager{path}", headers=headers,
                               body=None if body is None else json.dumps(body))
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def idle(self) -> bool:
        status, answer = self.call("GET", "/v1/deploys/status")
        groups = answer["deploys-status"] if status == 200 else {"new": [1]}
        return not (groups["new"] or groups.get("queued") or groups.get("deploying"))


def read_kit(created: dict[str, Any]) -> Kit:
    data = base64.b64decode(attribute(created["EngineAttributes"], "PUPPET_STARTER_KIT") or "")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        root = f"{created['ServerName']}/"
        conf = json.loads(archive.read(root + ".config/puppetlabs/client-tools/puppet-code.conf"))
        token = archive.read(root + conf["token-file"]).decode().strip()
        ca = archive.read(root + conf["cacert"]).decode()
    return Kit(ca=ca, url=conf["service-url"], token=token)


def _kill_engines(data_dir: Path) -> None:
    """What the stopped cmhost left running (engines outlive cmhost on purpose)."""
    for pid_file, marker in [*((p, "conf.d") for p in
                               data_dir.glob("engines/*/run/puppetserver.pid")),
                             *((p, "code-manager") for p in
                               data_dir.glob("engines/*/code-manager/code-manager.pid"))]:
        try:
            pid = int(pid_file.read_text())
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("code-deploy"))


@pytest.fixture(scope="module")
def sshd(work: Path) -> Iterator[Sshd]:
    sshd = Sshd(work / "sshd").start()
    yield sshd
    sshd.stop()


@pytest.fixture(scope="module")
def repos(work: Path) -> Repos:
    repos = Repos(work / "git")
    repos.commit("production", {"Puppetfile": repos.puppetfile(),
                                "manifests/site.pp": site_pp(work / "out.txt", "v1")})
    repos.commit("feature", {"manifests/site.pp": site_pp(work / "out.txt", "feature v1")})
    return repos


@pytest.fixture(scope="module")
def cmhost(work: Path) -> Iterator[Cmhost]:
    server_ = Cmhost(work / "cmhost", provisioning_seconds=PROVISIONING, extra_args=[
        "--puppet-driver", "puppetserver", "--java-heap", "1g", "--health-interval", "2",
        "--engine-ports", "28200-28259", "--log-level", "info"]).start()
    yield server_
    server_.stop()
    _kill_engines(server_.data_dir)


@pytest.fixture(scope="module")
def client(cmhost: Cmhost) -> Any:
    return cmhost.client()


@pytest.fixture(scope="module")
def created(cmhost: Cmhost, client: Any, sshd: Sshd, repos: Repos) -> dict[str, Any]:
    """The CreateServer answer of the ssh:// server, once HEALTHY."""
    answer = create_server(client, NAME, "Puppet", **quiet_windows(cmhost), EngineAttributes=[
        {"Name": "PUPPET_R10K_REMOTE", "Value": sshd.url(repos.control)},
        {"Name": "PUPPET_R10K_PRIVATE_KEY", "Value": sshd.private_key}])
    ca = attribute(answer["EngineAttributes"], "PUPPET_API_CA_CERT")
    assert ca is not None
    wait_for(lambda: serves(answer["Endpoint"], ca), START_TIMEOUT, "puppetserver to serve")
    cmhost.advance(PROVISIONING + 1)
    wait_for(lambda: server(client, NAME)["Status"] == "HEALTHY", 60, "HEALTHY")
    return dict(answer)


@pytest.fixture(scope="module")
def kit(created: dict[str, Any]) -> Kit:
    return read_kit(created)


@pytest.fixture(scope="module")
def agent(cmhost: Cmhost, client: Any, created: dict[str, Any], work: Path) -> Agent:
    ca = attribute(created["EngineAttributes"], "PUPPET_API_CA_CERT") or ""
    agent = Agent(work / "agent", NODE, created["Endpoint"], ca)
    agent.run("--waitforcert", "0")  # its key and CSR
    token = client.associate_node(ServerName=NAME, NodeName=NODE, EngineAttributes=[
        {"Name": "PUPPET_NODE_CSR", "Value": agent.csr}])["NodeAssociationStatusToken"]
    answer: dict[str, Any] = {}

    def done() -> bool:
        nonlocal answer
        settle(cmhost)
        answer = client.describe_node_association_status(
            ServerName=NAME, NodeAssociationStatusToken=token)
        return bool(answer["NodeAssociationStatus"] != "IN_PROGRESS")

    wait_for(done, 120, "the association")
    assert answer["NodeAssociationStatus"] == "SUCCESS", answer
    agent.install_certificate(attribute(answer["EngineAttributes"], "PUPPET_NODE_CERT") or "")
    return agent


def applied(agent: Agent, work: Path, *extra: str) -> str:
    """Run the agent; what the control repository's class wrote."""
    run = agent.run(*extra)
    assert run.returncode in (0, 2), run.stdout + run.stderr
    return (work / "out.txt").read_text().strip()


def event_matching(client: Any, name: str, start: str, timeout: float = 120) -> str:
    found: list[str] = []

    def seen() -> bool:
        found[:] = [m for m in events(client, name) if m.startswith(start)]
        return bool(found)

    wait_for(seen, timeout, f"an event starting {start!r}")
    return found[0]


# --- tests --------------------------------------------------------------------------------


def test_provisioning_deploys_every_branch_over_ssh_with_the_key(
        client: Any, created: dict[str, Any], kit: Kit, repos: Repos, sshd: Sshd) -> None:
    production = git(repos.base, "--git-dir", str(repos.control), "rev-parse", "production")
    deployed = event_matching(client, NAME, "Code deployed (provisioning): ")
    assert f"production at {production[:12]}" in deployed and "feature at " in deployed
    assert server(client, NAME)["Status"] == "HEALTHY"
    # The kit's Code Manager is on its own port, at the engine's host.
    host, port = kit.host_port
    assert host == created["Endpoint"].rpartition(":")[0]
    assert 28200 <= port <= 28259 and f":{port}" not in created["Endpoint"]
    assert "Accepted publickey" in sshd.log()


def test_the_agent_applies_the_control_repository_class(agent: Agent, work: Path) -> None:
    assert applied(agent, work) == "v1"
    assert applied(agent, work, "--environment", "feature") == "feature v1"


def test_a_push_deployed_by_the_webhook_is_applied(
        agent: Agent, kit: Kit, repos: Repos, work: Path) -> None:
    sha = repos.commit("production", {"manifests/site.pp": site_pp(work / "out.txt", "v2")})
    status, answer = kit.call("POST", f"/v1/webhook?type=github&token={kit.token}",
                              {"ref": "refs/heads/production", "after": sha}, token=None)
    assert status == 200 and [e["environment"] for e in answer] == ["production"], answer
    wait_for(kit.idle, 120, "the webhook's deployment")
    assert applied(agent, work) == "v2"


def test_the_deploys_endpoint_with_wait_answers_the_new_commit(
        agent: Agent, kit: Kit, repos: Repos, work: Path) -> None:
    sha = repos.commit("production", {"manifests/site.pp": site_pp(work / "out.txt", "v3")})
    status, answer = kit.call("POST", "/v1/deploys", {"environments": ["production"],
                                                      "wait": True})
    assert status == 200, answer
    assert answer[0]["status"] == "complete" and answer[0]["deploy-signature"] == sha, answer
    assert applied(agent, work) == "v3"


def test_a_bad_token_is_refused_and_deploys_nothing(kit: Kit, repos: Repos, work: Path) -> None:
    repos.commit("production", {"manifests/site.pp": site_pp(work / "out.txt", "v4")})
    body = {"environments": ["production"], "wait": True}
    for token in (None, "not-the-token", kit.token[:-1]):
        status, answer = kit.call("POST", "/v1/deploys", body, token=token)
        assert status == 401 and answer["kind"].startswith("puppetlabs.rbac/"), answer
    status, _ = kit.call("POST", "/v1/webhook?type=github&token=wrong",
                         {"ref": "refs/heads/production"}, token=None)
    assert status == 401
    assert kit.idle()


def test_a_broken_puppetfile_fails_and_the_old_code_is_still_served(
        client: Any, agent: Agent, kit: Kit, repos: Repos, work: Path) -> None:
    repos.commit("production", {"Puppetfile": "mod 'greeting', :git =>\n",
                                "manifests/site.pp": site_pp(work / "out.txt", "v5")})
    status, answer = kit.call("POST", "/v1/deploys", {"environments": ["production"],
                                                      "wait": True})
    assert status == 200 and answer[0]["status"] == "failed", answer
    error = answer[0]["error"]
    assert error["kind"] == "puppetlabs.code-manager/deploy-failure"
    assert "Puppetfile" in error["msg"], error
    assert applied(agent, work) == "v3"  # neither v4 (bad token) nor v5 (broken)
    failed = event_matching(client, NAME, "Code deployment of environment production failed")
    assert "Puppetfile" in failed


def test_restore_serves_the_code_of_the_backup(
        cmhost: Cmhost, client: Any, agent: Agent, kit: Kit, repos: Repos, work: Path) -> None:
    repos.commit("production", {"Puppetfile": repos.puppetfile(),
                                "manifests/site.pp": site_pp(work / "out.txt", "v6")})
    assert kit.call("POST", "/v1/deploys", {"environments": ["production"],
                                            "wait": True})[1][0]["status"] == "complete"
    assert applied(agent, work) == "v6"
    backup = backup_now(cmhost, client, NAME)
    repos.commit("production", {"manifests/site.pp": site_pp(work / "out.txt", "v7")})
    assert kit.call("POST", "/v1/deploys", {"environments": ["production"],
                                            "wait": True})[1][0]["status"] == "complete"
    assert applied(agent, work) == "v7"

    client.restore_server(ServerName=NAME, BackupId=backup["BackupId"])

    def healthy() -> bool:
        settle(cmhost)
        return bool(server(client, NAME)["Status"] == "HEALTHY")

    wait_for(healthy, START_TIMEOUT, "HEALTHY after the restore")
    assert applied(agent, work) == "v6"  # the backup's code, not redeployed over
    assert applied(agent, work, "--environment", "feature") == "feature v1"
    assert not [m for m in events(client, NAME) if m.startswith("Code deployed (restore)")]
    wait_for(kit.idle, 30, "the Code Manager to answer again")


def test_a_file_remote_is_deployed_at_provisioning(
        cmhost: Cmhost, client: Any, repos: Repos) -> None:
    answer = create_server(client, LOCAL, "Puppet", **quiet_windows(cmhost), EngineAttributes=[
        {"Name": "PUPPET_R10K_REMOTE", "Value": f"file://{repos.control}"}])
    local = read_kit(answer)
    # Its Code Manager deploys while its puppetserver starts.
    deployed = event_matching(client, LOCAL, "Code deployed (provisioning): ")
    assert "feature at " in deployed and "production at " in deployed
    status, listed = local.call("POST", "/v1/deploys", {"deploy-all": True, "wait": True})
    assert status == 200 and {e["environment"]: e["status"] for e in listed} == {
        "feature": "complete", "production": "complete"}, listed


def test_delete_server_stops_its_code_manager(cmhost: Cmhost, client: Any, kit: Kit,
                                              created: dict[str, Any]) -> None:
    root = cmhost.data_dir / "engines" / server_id(created["ServerArn"])
    client.delete_server(ServerName=NAME)
    settle(cmhost, 60)
    wait_for(lambda: not root.exists(), 120, "the engine directory to go")
    with pytest.raises(OSError):
        kit.call("GET", "/v1/deploys/status")
