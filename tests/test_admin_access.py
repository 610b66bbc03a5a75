"""Who may use /_cmhost/ off loopback: the admin token moves the clock, arms, lists and clears
faults, issues keys and reads the full health; without it the clock stays put, no fault is
armed, no key issued, and health says only its status. And the binds that must not start:
a virtual clock off loopback without a token, every address without a public URL."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Cmhost, free_port

TOKEN = "admin-token-for-the-tests"


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """Bound to every address (reached through 127.0.0.1), virtual clock, an admin token."""
    server = Cmhost(Path(tmp_path_factory.mktemp("exposed")), host="0.0.0.0",
                    admin_token=TOKEN,
                    extra_args=["--public-url", "http://127.0.0.1:1"]).start()
    server.host = "127.0.0.1"
    yield server
    server.stop()


def call(cm: Cmhost, method: str, path: str, body: Any = None,
         token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", cm.port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def clock_now(cm: Cmhost) -> float:
    status, clock = call(cm, "GET", "/_cmhost/clock")
    assert status == 200
    return float(clock["now"])


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN[:-1], ""])
def test_the_clock_does_not_move_without_the_token(exposed: Cmhost, token: str | None) -> None:
    before = clock_now(exposed)
    status, reply = call(exposed, "POST", "/_cmhost/clock", {"advance": 86400}, token=token)
    assert status == 403, reply
    assert reply["__type"] == "AccessDeniedException"
    assert "Authorization: Bearer" in reply["message"]
    assert clock_now(exposed) - before < 600  # real seconds pass; a day did not


def test_the_clock_moves_with_the_token(exposed: Cmhost) -> None:
    before = clock_now(exposed)
    status, reply = call(exposed, "POST", "/_cmhost/clock", {"advance": 86400}, token=TOKEN)
    assert status == 200, reply
    assert reply["mode"] == "virtual" and reply["now"] - before >= 86400


FAULT = {"kind": "error", "operation": "DescribeServers", "code": "ThrottlingException"}


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN[:-1], ""])
def test_faults_and_keys_need_the_token(exposed: Cmhost, token: str | None) -> None:
    for method, path, body in [("POST", "/_cmhost/faults", FAULT),
                               ("GET", "/_cmhost/faults", None),
                               ("DELETE", "/_cmhost/faults", None),
                               ("DELETE", "/_cmhost/faults/fault-0123456789ab", None),
                               ("POST", "/_cmhost/keys", {"account": "123456789012"})]:
        status, reply = call(exposed, method, path, body, token=token)
        assert status == 403, (method, path, reply)
        assert reply["__type"] == "AccessDeniedException"
        assert "Authorization: Bearer" in reply["message"]
    status, listed = call(exposed, "GET", "/_cmhost/faults", token=TOKEN)
    assert (status, listed) == (200, {"faults": []})  # nothing was armed


def test_faults_and_keys_answer_the_token(exposed: Cmhost) -> None:
    status, armed = call(exposed, "POST", "/_cmhost/faults", FAULT, token=TOKEN)
    assert status == 201 and armed["code"] == "ThrottlingException"
    status, listed = call(exposed, "GET", "/_cmhost/faults", token=TOKEN)
    assert [f["id"] for f in listed["faults"]] == [armed["id"]]
    assert call(exposed, "DELETE", "/_cmhost/faults", token=TOKEN) == (200, {"cleared": 1})
    status, key = call(exposed, "POST", "/_cmhost/keys", {"account": "123456789012"},
                       token=TOKEN)
    assert status == 201 and key["Account"] == "123456789012"
    client = exposed.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    assert client.describe_servers()["Servers"] == []


def test_health_tells_only_its_status_without_the_token(exposed: Cmhost) -> None:
    status, health = call(exposed, "GET", "/_cmhost/health")
    assert (status, health) == (200, {"status": "ok"})
    status, full = call(exposed, "GET", "/_cmhost/health", token=TOKEN)
    assert status == 200 and full["status"] == "ok"
    assert {"version", "database", "uptime", "credential_pool"} <= set(full)
    status, refused = call(exposed, "GET", "/_cmhost/health", token="wrong-token")
    assert status == 403 and refused["__type"] == "AccessDeniedException"


def refused_start(tmp_path: Path, *args: str) -> str:
    """Run `cmhost serve` expecting a refusal: its one line of output."""
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "cmhost", "serve", "--port", str(free_port()),
         "--data-dir", str(data_dir), "--master-key-file", str(tmp_path / "master.key"),
         "--database-url", f"sqlite:///{data_dir / 'cmhost.db'}", *args],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert len(output.splitlines()) == 1, output
    assert not data_dir.exists() and not (tmp_path / "master.key").exists(), (
        "a refused start opened its data directory or master key")
    return output


def test_a_virtual_clock_off_loopback_needs_an_admin_token(tmp_path: Path) -> None:
    line = refused_start(tmp_path, "--host", "0.0.0.0", "--public-url",
                         "http://127.0.0.1:4580", "--clock", "virtual")
    assert line.startswith("cmhost: error:") and "--admin-token" in line


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_every_address_needs_a_public_url(tmp_path: Path, host: str) -> None:
    line = refused_start(tmp_path, "--host", host, "--clock", "real")
    assert line.startswith("cmhost: error:") and "--public-url" in line
