"""A goiardi server's dashboard and console node list read the real Chef server: the node a
chef-client run would have saved (platform, environment, run list, check-in), its client,
roles and environments, as goiardi's own API answers them."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmhost.engines.goiardi import ChefApi
from tests.console.conftest import Browser
from tests.ops.helpers import associate, attribute, chef_attributes, healthy_server, server
from tests.support import Cmhost

if shutil.which("goiardi") is None:
    pytest.skip("install the Debian package goiardi (apt-get install goiardi)",
                allow_module_level=True)

NAME = "chef-dash"
PASSWORD = "Dash_admin1!"


@pytest.fixture(scope="module")
def cmhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    workdir = Path(tmp_path_factory.mktemp("goiardi-dashboard"))
    server_ = Cmhost(workdir, extra_args=["--chef-driver", "goiardi", "--engine-ports",
                                          "28500-28599"]).start()
    yield server_
    server_.stop()
    for pid_file in (server_.data_dir / "engines").glob("*/goiardi.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _pivotal(client: Any, created: dict[str, Any]) -> ChefApi:
    """goiardi's API as pivotal, with the key and CA of the CreateServer answer's kit."""
    kit = base64.b64decode(attribute(created["EngineAttributes"], "CHEF_STARTER_KIT") or "")
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        files = {n.split("/", 1)[1]: archive.read(n).decode() for n in archive.namelist()}
    host, _, port = server(client, NAME)["Endpoint"].rpartition(":")
    return ChefApi(host, int(port), files[".chef/ca_certs/opsworks-cm-ca.pem"], "pivotal",
                   files[".chef/private.pem"])


def test_the_dashboard_shows_what_goiardi_holds(cmhost: Cmhost) -> None:
    client = cmhost.client()
    created = healthy_server(cmhost, client, NAME, EngineAttributes=[
        {"Name": "CHEF_DELIVERY_ADMIN_PASSWORD", "Value": PASSWORD}])
    assert associate(cmhost, client, NAME, "app-1", chef_attributes())[
        "NodeAssociationStatus"] == "SUCCESS"
    chef = _pivotal(client, created)
    chef.expect("POST", "/environments", {"name": "staging", "json_class": "Chef::Environment",
                                          "chef_type": "environment"})
    chef.expect("POST", "/roles", {"name": "web", "json_class": "Chef::Role",
                                   "chef_type": "role", "run_list": ["recipe[nginx]"]})
    # What a chef-client run of the node saves.
    _, node = chef.expect("GET", "/nodes/app-1")
    node.update(chef_environment="staging", run_list=["role[web]"],
                automatic={"platform": "debian", "platform_version": "12",
                           "ohai_time": 1767225600.0})
    chef.expect("PUT", "/nodes/app-1", node)

    admin = Browser(cmhost)
    admin.get(f"/servers/{NAME}/dashboard/")
    assert admin.post(f"/servers/{NAME}/dashboard/signin",
                      {"user": "admin", "password": PASSWORD}).status_code == 303
    page = admin.get(f"/servers/{NAME}/dashboard/").text
    assert "goiardi&#39;s Chef API" in page
    row = page.split('data-node="app-1"', 1)[1].split("</tr>", 1)[0]
    for shown in ("debian 12", "staging", "role[web]", "2026-01-01 00:00:00 UTC"):
        assert shown in row, row
    for section, item in (("clients", "app-1"), ("roles", "web"), ("environments", "staging")):
        assert item in page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0], section
    assert "chef-validator" not in page and "pivotal" not in page.split('id="clients"')[1]

    user = Browser(cmhost)
    user.sign_in()
    nodes = user.get(f"/console/servers/{NAME}/nodes").text
    row = nodes.split('data-node="app-1"', 1)[1].split("</tr>", 1)[0]
    assert "SUCCESS" in row and "2026-01-01T00:00:00Z" in row
