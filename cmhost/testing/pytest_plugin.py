"""The pytest plugin of cmhost (entry point `pytest11`, name `cmhost`): fixtures to test code
that drives AWS OpsWorks CM against a cmhost, as moto and pytest-postgresql are used.

- `cmhost_server` (session): a `cmhost serve` on a free loopback port with a virtual clock,
  its own data directory and master key, embedded engines and no throttling unless the
  options say otherwise; or the cmhost at `--cmhost-url`, started by someone else.
- `cmhost_account`: a fresh account (12-digit ID and access key) for each test.
- `opsworkscm`: a boto3 `opsworkscm` client of that account (us-east-1, no retries).
- `cmhost_clock`: `now()` and `advance(seconds)`.
- `cmhost_faults`: arm faults (for the test's account unless told otherwise), list and clear
  them; those a test armed are disarmed when it ends.
- `wait_until_healthy(name)`: waits for a server of the test's account to be HEALTHY,
  moving the virtual clock rather than sleeping.

Nothing starts unless a test uses these fixtures. Options: `--cmhost-url`,
`--cmhost-admin-token`, and in pytest.ini (or as `--cmhost-<name>`) `cmhost_puppet_driver`,
`cmhost_chef_driver`, `cmhost_provisioning_seconds`, `cmhost_throttle`, `cmhost_region`,
`cmhost_serve_args`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cmhost.testing.faults import FaultArming
    from cmhost.testing.server import Account, Clock, CmhostServer

# ini name -> (help, default); each is also a command-line option --cmhost-<name>.
_INI = {
    "cmhost_url": ("URL of a running cmhost to test against instead of starting one", ""),
    "cmhost_admin_token": ("admin token of that cmhost, if it listens beyond loopback", ""),
    "cmhost_puppet_driver": ("what runs Puppet servers: embedded or puppetserver",
                             "embedded"),
    "cmhost_chef_driver": ("what runs Chef servers: embedded or goiardi", "embedded"),
    "cmhost_provisioning_seconds": ("seconds a new server spends in CREATING", "5"),
    "cmhost_throttle": ("AWS throttling of the started cmhost: on or off", "off"),
    "cmhost_region": ("region of the opsworkscm clients", "us-east-1"),
    "cmhost_serve_args": ("more `cmhost serve` arguments for the started cmhost", ""),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cmhost", "cmhost (AWS OpsWorks CM) fixtures")
    for name, (text, default) in _INI.items():
        parser.addini(name, text, default=default)
        group.addoption("--" + name.replace("_", "-"), dest=name, default=None,
                        help=f"{text} (ini: {name}, default {default or 'none'})")


def _option(config: pytest.Config, name: str) -> str:
    value = config.getoption(name)
    return str(value if value is not None else config.getini(name)).strip()


@pytest.fixture(scope="session")
def cmhost_server(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[CmhostServer]:
    """The cmhost of the session: started here (and stopped at the end), or `--cmhost-url`."""
    from cmhost.testing.sdk import botocore_has_opsworkscm, export_sdk_model
    from cmhost.testing.server import CmhostServer, ServeOptions

    region = _option(pytestconfig, "cmhost_region")
    provisioning = float(_option(pytestconfig, "cmhost_provisioning_seconds"))
    url = _option(pytestconfig, "cmhost_url")
    if url:
        server = CmhostServer.external(
            url, admin_token=_option(pytestconfig, "cmhost_admin_token") or None,
            provisioning_seconds=provisioning, region=region)
    else:
        options = ServeOptions(
            puppet_driver=_option(pytestconfig, "cmhost_puppet_driver"),
            chef_driver=_option(pytestconfig, "cmhost_chef_driver"),
            provisioning_seconds=provisioning,
            throttle=_option(pytestconfig, "cmhost_throttle") == "on",
            extra_args=tuple(shlex.split(_option(pytestconfig, "cmhost_serve_args"))))
        server = CmhostServer.start(tmp_path_factory.mktemp("cmhost"), options, region=region)
    saved = os.environ.get("AWS_DATA_PATH")
    if not botocore_has_opsworkscm():
        # This botocore has no opsworkscm model: cmhost's own, for the fixtures' clients
        # and for those the tests make themselves (through AWS_DATA_PATH).
        server.sdk_model_dir = export_sdk_model(tmp_path_factory.mktemp("sdk-model"))
        os.environ["AWS_DATA_PATH"] = os.pathsep.join(
            p for p in (str(server.sdk_model_dir), saved) if p)
    try:
        yield server
    finally:
        server.stop()
        if server.sdk_model_dir is not None:
            if saved is None:
                os.environ.pop("AWS_DATA_PATH", None)
            else:
                os.environ["AWS_DATA_PATH"] = saved


@pytest.fixture
def cmhost_account(cmhost_server: CmhostServer) -> Account:
    """A fresh account for the test: its `id`, its key, and `client(service)`."""
    return cmhost_server.new_account()


@pytest.fixture
def opsworkscm(cmhost_account: Account) -> Any:
    """A boto3 opsworkscm client of the test's account, pointed at the cmhost."""
    return cmhost_account.client("opsworkscm")


@pytest.fixture
def cmhost_clock(cmhost_server: CmhostServer) -> Clock:
    """The cmhost's clock: `now()`, `advance(seconds)`."""
    return cmhost_server.clock


@pytest.fixture
def cmhost_faults(cmhost_server: CmhostServer, cmhost_account: Account
                  ) -> Iterator[FaultArming]:
    """Arm (`arm`, `fail_job`, `hold_status`, `error`, `latency`), `list` and `clear`
    faults; they apply to the test's account unless given `account=`."""
    from cmhost.testing.faults import FaultArming

    arming = FaultArming(cmhost_server.admin, cmhost_account.id)
    yield arming
    arming.disarm_mine()


@pytest.fixture
def wait_until_healthy(cmhost_server: CmhostServer, opsworkscm: Any
                       ) -> Callable[..., dict[str, Any]]:
    """`wait_until_healthy(name, timeout=600)`: the server's description once HEALTHY."""
    from cmhost.testing.waits import wait_until_healthy as wait

    def wait_for(name: str, *, client: Any = None, timeout: float = 600.0) -> dict[str, Any]:
        return wait(cmhost_server, client or opsworkscm, name, timeout=timeout)
    return wait_for
