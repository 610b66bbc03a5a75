"""The credential pool seen from outside: CreateServer through boto3 takes the workers' keys
and passwords, hands each out once, and still answers when no worker fills the pool."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import Cmhost, create_server

FULL = {"rsa-2048": 6, "password-chef": 2, "password-puppet": 2}  # --credential-pool 2


@pytest.fixture()
def started(tmp_path: Path) -> Iterator[Callable[..., Cmhost]]:
    procs: list[Cmhost] = []

    def start(name: str, workdir: str | None = None, **kwargs: Any) -> Cmhost:
        kwargs.setdefault("provisioning_seconds", 0.0)
        proc = Cmhost(tmp_path / (workdir or name), clock="real", **kwargs)
        proc.log_path = tmp_path / f"{name}.log"
        proc.start()
        procs.append(proc)
        return proc
    yield start
    for proc in reversed(procs):
        proc.stop()


def pool_state(cm: Cmhost) -> dict[str, Any]:
    return dict(cm.get("/_cmhost/health")["credential_pool"])


def wait_full(cm: Cmhost, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while pool_state(cm)["entries"] != FULL:
        assert time.monotonic() < deadline, pool_state(cm)
        time.sleep(0.1)


def attributes(server: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in server["EngineAttributes"]}


def kit_ca(kit_b64: str) -> str:
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(kit_b64))) as kit:
        name = next(n for n in kit.namelist()
                    if n.endswith("ca.pem") or "/ca_certs/" in n and n.endswith(".pem"))
        return kit.read(name).decode()


def public_key(cert_pem: str) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem.encode()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_create_server_takes_pooled_credentials_once(started: Callable[..., Cmhost]) -> None:
    cm = started("one", extra_args=["--credential-pool", "2"])
    wait_full(cm)
    client = cm.client()
    chef = attributes(create_server(client, "pooled-chef", "ChefAutomate"))
    puppet = attributes(create_server(client, "pooled-puppet", "Puppet"))
    state = pool_state(cm)
    assert state["made_in_requests"] == 0
    # The filler tops the pool up again behind the requests.
    wait_full(cm)

    pivotal = serialization.load_pem_private_key(
        chef["CHEF_AUTOMATE_PIVOTAL_KEY"].encode(), password=None)
    assert pivotal.key_size == 2048  # type: ignore[union-attr]
    cas = [kit_ca(chef["CHEF_STARTER_KIT"]), kit_ca(puppet["PUPPET_STARTER_KIT"])]
    assert public_key(cas[0]) != public_key(cas[1])
    assert chef["CHEF_AUTOMATE_ADMIN_PASSWORD"] != puppet["PUPPET_ADMIN_PASSWORD"]
    deadline = time.monotonic() + 60
    while {s["Status"] for s in client.describe_servers()["Servers"]} != {"HEALTHY"}:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_an_api_without_workers_makes_credentials_itself(started: Callable[..., Cmhost]
                                                         ) -> None:
    cm = started("api", extra_args=["--no-worker", "--credential-pool", "2"])
    began = time.monotonic()
    create_server(cm.client(), "no-filler", "Puppet")
    assert time.monotonic() - began < 10.0
    state = pool_state(cm)
    assert state["entries"] == {}
    assert state["made_in_requests"] == 4  # three keys and the admin password


def test_an_api_process_takes_what_a_worker_process_made(started: Callable[..., Cmhost]
                                                         ) -> None:
    api = started("api", extra_args=["--no-worker", "--credential-pool", "2"])
    started("worker", workdir="api", command="worker", extra_args=["--credential-pool", "2"],
            database_url=api.database_url)
    wait_full(api)
    client = api.client()
    for i in range(4):  # twice what the pool holds: the API waits for the worker
        create_server(client, f"from-worker-{i}", "Chef" if i % 2 else "Puppet")
    assert pool_state(api)["made_in_requests"] == 0
