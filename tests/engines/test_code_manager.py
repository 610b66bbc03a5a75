"""The Code Manager process (no puppetserver): started by the driver's side through the real
supervisor, with its secrets on stdin; its HTTPS API as PE documents it (deploys with and
without wait, the GitHub webhook, deploys/status), token authentication, the deployment asked
for at provisioning, and the events of every deployment."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cmhost.engines import pki
from cmhost.engines.base import DriverContext, EngineMaterial
from cmhost.engines.code_manager.side import CodeManagerSide, Identity
from cmhost.engines.code_manager.token import TOKEN_DIGEST, new_token
from cmhost.engines.r10k import deployed_signature
from cmhost.engines.supervisor import Supervisor
from tests.engines.git_repos import Repos, Sshd, free_port, have_tools, site_pp

pytestmark = pytest.mark.skipif(bool(have_tools()), reason=have_tools() or "tools present")

SERVER_ID = "6f1c2a4e-0000-4000-8000-00000000c0de"


@dataclass
class Running:
    side: CodeManagerSide
    root: Path
    repos: Repos
    token: str
    private_key: str
    ca: str
    port: int
    context: ssl.SSLContext

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                                 timeout=120)
        sent = dict(headers or {})
        if token is not None:
            sent["X-Authentication"] = token
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body),
                               headers=sent)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def served(self, environment: str = "production") -> str:
        return (self.root / "state" / "code" / "environments" / environment / "manifests"
                / "site.pp").read_text()

    def events(self) -> list[str]:
        return [e.message for e in self.side.take_events(self.root.parent)]

    def idle(self) -> bool:
        _, status = self.call("GET", "/code-manager/v1/deploys/status", token=self.token)
        groups = status["deploys-status"]
        return not (groups["new"] or groups["queued"] or groups["deploying"])


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("code-manager")
    repos = Repos(base / "git")
    repos.commit("production", {"Puppetfile": repos.puppetfile(),
                                "manifests/site.pp": site_pp("/tmp/x", "v1")})
    repos.commit("feature", {"manifests/site.pp": site_pp("/tmp/x", "feature")})
    root = base / "engines" / SERVER_ID
    (root / "state" / "code" / "environments" / "production" / "manifests").mkdir(parents=True)
    ca, ca_key = pki.generate_ca("code manager test CA")
    cert, key = pki.issue_certificate(ca, ca_key, "127.0.0.1", ["127.0.0.1"])
    (root / "ssl").mkdir()
    identity = Identity(root / "ssl" / "cert.pem", root / "ssl" / "key.pem")
    identity.cert_file.write_text(cert)
    identity.key_file.write_text(key)
    token, digest = new_token()
    private_key = Sshd(base / "keys").private_key  # a real key; the file remote needs none
    material = EngineMaterial(public={"r10k_remote": f"file://{repos.control}",
                                      TOKEN_DIGEST: digest},
                              secrets={"r10k_private_key": private_key})
    port = free_port()
    side = CodeManagerSide(DriverContext(data_dir=base, port_min=port, port_max=port),
                           Supervisor(poll_interval=0.2))
    assert side.enabled(material)
    side.request_deploy(root, "provisioning")  # before it starts, as the driver does
    side.start(SERVER_ID, root, identity, material, restart=False)
    running = Running(side, root, repos, token, private_key, ca, port,
                      ssl.create_default_context(cadata=ca))
    wait_for(lambda: side.problem(SERVER_ID, root, running.context) == "", 30)
    yield running
    side.stop(SERVER_ID, root, identity)
    side.supervisor.close()


def test_the_deployment_asked_for_at_provisioning_runs_first(running: Running) -> None:
    wait_for(lambda: deployed_signature(running.root, "feature") is not None)
    wait_for(running.idle)
    events = running.events()
    assert len(events) == 1 and events[0].startswith("Code deployed (provisioning): "), events
    assert "feature at " in events[0] and "production at " in events[0]
    assert "'v1'" in running.served() and "'feature'" in running.served("feature")


def test_secrets_reach_the_process_through_stdin_only(running: Running) -> None:
    status = running.side.supervisor.status(running.side.key(SERVER_ID))
    assert status is not None and status.alive and status.pid is not None
    proc = Path(f"/proc/{status.pid}")
    needle = running.private_key.strip().splitlines()[1].encode()
    for part in ("cmdline", "environ"):
        assert needle not in (proc / part).read_bytes(), part
    for path in running.root.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


def test_requests_without_the_token_are_refused_and_deploy_nothing(running: Running) -> None:
    sha = running.repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v2")})
    body = {"environments": ["production"], "wait": True}
    status, answer = running.call("POST", "/code-manager/v1/deploys", body)
    assert status == 401 and answer["kind"] == "puppetlabs.rbac/user-unauthenticated"
    status, answer = running.call("POST", "/code-manager/v1/deploys", body, token="wrong")
    assert status == 401 and answer["kind"] == "puppetlabs.rbac/token-invalid"
    status, _ = running.call("POST", "/code-manager/v1/webhook?type=github&token=wrong",
                             {"ref": "refs/heads/production"})
    assert status == 401
    status, _ = running.call("GET", "/code-manager/v1/deploys/status")
    assert status == 401
    time.sleep(1.5)
    assert running.idle() and "'v1'" in running.served()
    assert deployed_signature(running.root, "production") != sha
    assert running.events() == []


def test_deploys_with_wait_answer_each_environment_with_its_commit(running: Running) -> None:
    sha = running.repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v3")})
    status, answer = running.call("POST", "/code-manager/v1/deploys",
                                  {"environments": ["production", "nope"], "wait": True},
                                  token=running.token)
    assert status == 200
    production, nope = answer
    assert production["environment"] == "production" and production["status"] == "complete"
    assert production["deploy-signature"] == sha and isinstance(production["id"], int)
    assert nope["status"] == "failed"
    assert nope["error"]["kind"] == "puppetlabs.code-manager/deploy-failure"
    assert "no branch" in nope["error"]["msg"]
    assert "'v3'" in running.served()
    events = running.events()
    assert events[0] == f"Code deployed (Code Manager API request): production at {sha[:12]}."
    assert events[1].startswith("Code deployment of environment nope failed")


def test_deploy_all_without_wait_is_queued_and_the_token_may_be_a_parameter(
        running: Running) -> None:
    sha = running.repos.commit("feature", {"manifests/site.pp": site_pp("/tmp/x", "feature 2")})
    status, answer = running.call("POST", f"/code-manager/v1/deploys?token={running.token}",
                                  {"deploy-all": True})
    assert status == 200
    assert [(e["environment"], e["status"]) for e in answer] == [
        ("feature", "new"), ("production", "new")]
    wait_for(running.idle)
    assert deployed_signature(running.root, "feature") == sha
    running.events()


def test_a_github_push_webhook_deploys_the_pushed_branch(running: Running) -> None:
    sha = running.repos.commit("production", {"manifests/site.pp": site_pp("/tmp/x", "v4")})
    path = f"/code-manager/v1/webhook?type=github&token={running.token}"
    status, answer = running.call("POST", path, {"ref": "refs/heads/production",
                                                 "after": sha, "deleted": False},
                                  headers={"X-GitHub-Event": "push"})
    assert status == 200 and [e["environment"] for e in answer] == ["production"]
    wait_for(running.idle)
    assert "'v4'" in running.served()
    expected = f"Code deployed (webhook: push to production): production at {sha[:12]}."
    assert running.events() == [expected]
    # GitHub's ping when the webhook is made, and a tag's push, deploy nothing.
    assert running.call("POST", path, {"zen": "hi"}, headers={"X-GitHub-Event": "ping"})[0] == 200
    assert running.call("POST", path, {"ref": "refs/tags/v1"}) == (200, [])
    assert running.call("POST", path.replace("github", "svn"), {})[0] == 400


def test_a_broken_puppetfile_fails_reports_and_keeps_the_served_code(running: Running) -> None:
    before = deployed_signature(running.root, "production")
    running.repos.commit("production", {"Puppetfile": "mod 'greeting', :git =>\n",
                                        "manifests/site.pp": site_pp("/tmp/x", "broken")})
    status, answer = running.call("POST", "/code-manager/v1/deploys",
                                  {"environments": ["production"], "wait": True},
                                  token=running.token)
    assert status == 200 and answer[0]["status"] == "failed", answer
    error = answer[0]["error"]
    assert error["kind"] == "puppetlabs.code-manager/deploy-failure"
    assert "Puppetfile" in error["msg"] and error["details"] == {"corrected-name": "production"}
    assert "'v4'" in running.served() and deployed_signature(running.root, "production") == before
    [event] = running.events()
    assert event.startswith("Code deployment of environment production failed (Code Manager "
                            "API request); the environment is left as it was.")
    _, status_answer = running.call("GET", "/code-manager/v1/deploys/status",
                                    token=running.token)
    assert status_answer["deploys-status"]["failed"][-1]["environment"] == "production"


@pytest.mark.parametrize("body", [
    {}, {"environments": []}, {"environments": "production"}, {"deploy-all": "yes"},
    {"deploy-all": True, "dry-run": True}, [1]])
def test_malformed_deploy_requests_are_refused(running: Running, body: Any) -> None:
    status, answer = running.call("POST", "/code-manager/v1/deploys", body, token=running.token)
    assert status == 400 and answer["kind"] == "puppetlabs.code-manager/invalid-request"


def test_a_stopped_code_manager_is_a_health_problem(running: Running) -> None:
    identity = Identity(running.root / "ssl" / "cert.pem", running.root / "ssl" / "key.pem")
    running.side.stop(SERVER_ID, running.root, identity)
    problem = running.side.problem(SERVER_ID, running.root, running.context)
    assert "does not answer (connection refused)" in problem
    assert f"127.0.0.1:{running.port}" in problem
