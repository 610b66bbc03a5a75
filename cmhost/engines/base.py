"""The EngineDriver protocol: what every way of running a Chef or Puppet server must do.

Drivers know nothing of the API or the database. The service layer calls `prepare` inside
the CreateServer request (its one-time credentials go back in the response); the workflow
worker calls the other methods from durable jobs, so each must be idempotent: running a step
twice (after a crash) must leave the same result as running it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

EngineFamily = Literal["Chef", "Puppet"]
HealthStatus = Literal["HEALTHY", "UNHEALTHY", "CONNECTION_LOST"]


class EngineError(Exception):
    """A driver could not do what was asked; the message is fit for a StatusReason."""


class InvalidEngineAttribute(EngineError):
    """A caller-supplied engine attribute is not acceptable (becomes a ValidationException)."""


@dataclass(frozen=True)
class ServerSpec:
    """Everything a driver may know about one server."""

    server_id: str  # stable UUID, the last part of the server ARN
    name: str
    account: str
    region: str
    engine: str  # as the caller gave it: "Chef", "ChefAutomate" or "Puppet"
    family: EngineFamily  # "Chef" for Chef and ChefAutomate
    engine_version: str  # full version as DescribeServers shows it
    endpoint: str  # host name (or host:port) clients use to reach the engine
    api_endpoint: str = ""  # URL of this cmhost's API, used by user data (aws --endpoint-url)
    custom_domain: str | None = None


@dataclass(frozen=True)
class EngineMaterial:
    """The persistent identity of an engine server, produced by `prepare`.

    `public` is stored as is (certificates, public keys, password hashes); `secrets` is
    stored only encrypted with the master key (CA private keys and the like). Neither holds a
    credential that CreateServer hands out once: those live only in `one_time_attributes`.
    """

    public: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """What `prepare` returns."""

    material: EngineMaterial
    # Returned once, in the CreateServer response only (CHEF_PIVOTAL_KEY, CHEF_STARTER_KIT,
    # CHEF_DELIVERY_ADMIN_PASSWORD, PUPPET_STARTER_KIT, PUPPET_ADMIN_PASSWORD).
    one_time_attributes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    reason: str = ""


class EngineDriver(Protocol):
    """One way of running servers of one engine family."""

    name: str  # "embedded", "puppetserver", "goiardi"

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """Create the server's identity (keys, CA, passwords) from validated attributes.

        Runs inside the CreateServer request; must not start processes or write files.
        """
        ...

    def public_attributes(self, spec: ServerSpec, material: EngineMaterial) -> list[tuple[str, str]]:
        """Engine attributes shown in every DescribeServers (PUPPET_API_CA_CERT)."""
        ...

    def provision(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Bring the engine up (idempotent)."""
        ...

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        """Ask the engine whether it serves."""
        ...

    def destroy(self, spec: ServerSpec) -> None:
        """Stop the engine and remove everything it has on disk (idempotent)."""
        ...


@dataclass(frozen=True)
class DriverContext:
    """What a driver is built with."""

    data_dir: Path  # the driver keeps per-server state under data_dir / "engines" / server_id
