"""What the service layer works with: database, clock, secrets, drivers and settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cmhost.config import Settings
from cmhost.engines.base import EngineDriver, EngineFamily
from cmhost.engines.pki import CredentialSupply
from cmhost.storage.blobs import BlobStore
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox
from cmhost.workflows.clock import Clock
from cmhost.workflows.jobs import Enqueuer


@dataclass
class Drivers:
    """The engine drivers of this process, by engine family and by driver name."""

    by_family: dict[EngineFamily, EngineDriver]
    by_name: dict[tuple[EngineFamily, str], EngineDriver] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family, driver in self.by_family.items():
            self.by_name.setdefault((family, driver.name), driver)

    def for_new_server(self, family: EngineFamily) -> EngineDriver:
        return self.by_family[family]

    def for_server(self, family: EngineFamily, name: str) -> EngineDriver:
        try:
            return self.by_name[(family, name)]
        except KeyError:
            raise LookupError(f"no {name!r} driver for {family} is configured") from None


@dataclass
class Runtime:
    db: Database
    clock: Clock
    box: SecretBox
    drivers: Drivers
    settings: Settings
    enqueuer: Enqueuer
    blobs: BlobStore
    wake_worker: Callable[[], None] = lambda: None
    # Keys and passwords made ahead of time (the credential pool); None: made when needed.
    credentials: CredentialSupply | None = None
