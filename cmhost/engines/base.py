"""The EngineDriver protocol: what every way of running a Chef or Puppet server must do.

Drivers know nothing of the API or the database. The service layer calls `prepare` inside
the CreateServer request (its one-time credentials go back in the response); the workflow
worker calls the other methods from durable jobs, so each must be idempotent: running a step
twice (after a crash) must leave the same result as running it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # issuance imports this module (EngineError)
    from cmhost.engines.issuance import Issued

EngineFamily = Literal["Chef", "Puppet"]
NodeAction = Literal["associate", "disassociate"]
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


@dataclass(frozen=True)
class Maintained:
    """What `maintain` returns."""

    material: EngineMaterial  # the server's identity from now on (a renewed server cert...)
    engine_version: str | None = None  # the new version after a major upgrade, else None


@dataclass(frozen=True)
class EngineEvent:
    """Something a server's engine did on its own (a code deployment that failed, say) that
    belongs in the server's events. Drivers that have such things offer
    `take_events() -> list[EngineEvent]`, which hands each out once; the health monitor
    records them."""

    server_id: str
    message: str


class EngineDriver(Protocol):
    """One way of running servers of one engine family."""

    name: str  # "embedded", "puppetserver", "goiardi"

    def allocate_endpoint(self, server_id: str, server_name: str, region: str) -> str:
        """The Endpoint of a new server (called by CreateServer before `prepare`): a DNS-like
        name for the embedded driver, a reachable `host:port` for drivers of real engines."""
        ...

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """Create the server's identity (keys, CA, passwords) from validated attributes.

        Runs inside the CreateServer request; must not start processes. It may reserve what
        the server's kit must name (a port recorded in the server's directory, as
        allocate_endpoint does), nothing else.
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

    def resume(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """After cmhost (re)starts: make sure an existing server's engine runs again,
        re-attaching to a process that survived or starting it (idempotent)."""
        ...

    def close(self) -> None:
        """cmhost is stopping: stop supervising (engines may keep running, to be resumed)."""
        ...

    # --- nodes ------------------------------------------------------------------------

    def check_node_request(self, spec: ServerSpec, action: NodeAction, node_name: str,
                           attributes: dict[str, str]) -> dict[str, str]:
        """Validate AssociateNode/DisassociateNode attributes at request time.

        Returns them with canonical names (CHEF_AUTOMATE_* spellings mapped to CHEF_*);
        raises InvalidEngineAttribute (a malformed key or CSR, a CSR whose CN is not the
        node name, a missing or unknown attribute, an organization other than `default`).
        """
        ...

    def associate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                       attributes: dict[str, str]) -> list[tuple[str, str]]:
        """Register the node (idempotent); returns attributes for DescribeNodeAssociationStatus
        (PUPPET_NODE_CERT for Puppet)."""
        ...

    def disassociate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                          attributes: dict[str, str]) -> None:
        """Remove the node (idempotent): its key stops working / its certificate is revoked."""
        ...

    def node_names(self, spec: ServerSpec) -> list[str]:
        """The nodes the engine knows, sorted."""
        ...

    def accepts_client(self, spec: ServerSpec, node_name: str, data: bytes,
                       signature: bytes) -> bool:
        """Chef: whether the engine accepts the node's key, i.e. `signature` is an RSA
        PKCS#1 v1.5 SHA-256 signature of `data` by the key the node was associated with.
        False for an unknown or disassociated node (and on Puppet servers)."""
        ...

    def is_revoked(self, spec: ServerSpec, cert_pem: str) -> bool:
        """Puppet: whether the server's CRL lists the certificate. ValueError if `cert_pem`
        is not a PEM certificate."""
        ...

    # --- backup, restore, maintenance ---------------------------------------------------

    def backup(self, spec: ServerSpec, material: EngineMaterial) -> bytes:
        """The engine's whole state (identity with its secrets, node registry, config) as one
        artifact. The caller encrypts it before it is stored anywhere."""
        ...

    def restore(self, spec: ServerSpec, artifact: bytes) -> EngineMaterial:
        """Rebuild the engine from a `backup` artifact (idempotent); returns the identity the
        artifact holds, which becomes the server's (with a new server certificate when the
        backup's does not name this server's endpoint or is close to expiry, as when a new
        server is created from another's backup). Raises EngineError if it is unusable, and
        then leaves the engine as it was."""
        ...

    def take_restore_revocations(self, server_id: str) -> list[Issued]:
        """The certificates the server's last `restore` in this process revoked (those its CA
        issued after the backup was taken), then forgotten: the caller records them in an
        event after every restore, maintenance included. [] when none (always for Chef)."""
        ...

    def maintain(self, spec: ServerSpec, material: EngineMaterial, *,
                 major_upgrade: bool) -> Maintained:
        """Apply maintenance to a server just restored from a fresh backup: restart the engine
        from its material and renew what is close to expiry (the server certificate). With
        major_upgrade (Chef 12 only, else InvalidEngineAttribute) upgrades the engine.
        Returns the material to store from now on and the new engine version, if any."""
        ...

    # --- engine attributes --------------------------------------------------------------

    def update_attribute(self, spec: ServerSpec, material: EngineMaterial, name: str,
                         value: str | None) -> Prepared:
        """UpdateServerEngineAttributes: CHEF_PIVOTAL_KEY (a given public key, or a new pair
        whose private key and a new starter kit are returned once) or PUPPET_ADMIN_PASSWORD.
        Returns the new material and the one-time attributes. Raises InvalidEngineAttribute."""
        ...

    def userdata(self, spec: ServerSpec, material: EngineMaterial,
                 inputs: dict[str, str]) -> str:
        """ExportServerEngineAttribute Userdata: the node bootstrap script. `inputs` holds
        RunList, OrganizationName, NodeEnvironment, NodeClientVersion (ignored by Puppet).
        Raises InvalidEngineAttribute for an unknown input name or a bad value."""
        ...


@dataclass(frozen=True)
class DriverContext:
    """What a driver is built with."""

    data_dir: Path  # the driver keeps per-server state under data_dir / "engines" / server_id
    # For drivers that run real engine processes (puppetserver, goiardi):
    engine_host: str = "127.0.0.1"  # address engines listen on and Endpoints name
    port_min: int = 18140  # engines take ports from [port_min, port_max]
    port_max: int = 18999
    java_heap: str = "1g"  # puppetserver's -Xms/-Xmx
    # PuppetDB beside each puppetserver-driven server, in a database of its own on this
    # PostgreSQL server (a SQLAlchemy/libpq URL); None: no PuppetDB.
    puppetdb_database_url: str | None = None
