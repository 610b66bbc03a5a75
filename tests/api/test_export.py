"""The exported botocore model lets an SDK without OpsWorks CM build a working client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import EndpointResolutionError, UnknownServiceError

from cmhost.api.export import export_model
from cmhost.api.model import SERVICE

ENDPOINT = "http://127.0.0.1:4580"
PAGINATED = ("describe_backups", "describe_events", "describe_servers", "list_tags_for_resource")


class _Sent(Exception):
    """Raised from the send hook so that no request leaves the process."""


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    export_model(directory)
    return directory


@pytest.fixture
def sdk_without_opsworkscm(tmp_path: Path) -> Path:
    """botocore's data directory minus opsworkscm: what current SDK releases ship."""
    builtin = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH)
    stripped = tmp_path / "botocore-data"
    stripped.mkdir()
    for entry in builtin.iterdir():
        if entry.name != "opsworkscm":
            (stripped / entry.name).symlink_to(entry)
    return stripped


def _session(*search_paths: Path) -> botocore.session.Session:
    loader = botocore.loaders.Loader(
        extra_search_paths=[str(p) for p in search_paths], include_default_search_paths=False
    )
    session = botocore.session.Session()
    session.register_component("data_loader", loader)
    return session


def _client(session: botocore.session.Session, **kwargs: Any) -> Any:
    return session.create_client(
        "opsworkscm", region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", **kwargs,
    )


def test_writes_the_botocore_files(tmp_path: Path) -> None:
    paths = export_model(tmp_path)
    folder = tmp_path / "opsworkscm" / "2016-11-01"
    assert {p.name for p in paths} == {
        "service-2.json", "paginators-1.json", "waiters-2.json", "endpoint-rule-set-1.json"
    }
    assert all(p.parent == folder for p in paths)
    service = json.loads((folder / "service-2.json").read_text())
    assert service["metadata"]["targetPrefix"] == "OpsWorksCM_V2016_11_01"
    assert len(service["operations"]) == 19


def test_export_is_repeatable(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in export_model(tmp_path / "a")]
    second = [p.read_bytes() for p in export_model(tmp_path / "a")]
    assert first == second


def test_the_sdk_alone_does_not_know_the_service(sdk_without_opsworkscm: Path) -> None:
    with pytest.raises(UnknownServiceError):
        _client(_session(sdk_without_opsworkscm), endpoint_url=ENDPOINT)


def test_client_from_exported_model(exported: Path, sdk_without_opsworkscm: Path) -> None:
    client = _client(_session(exported, sdk_without_opsworkscm), endpoint_url=ENDPOINT)
    model = client.meta.service_model
    assert sorted(model.operation_names) == sorted(SERVICE.operations)
    assert model.documentation == SERVICE.documentation
    assert all(client.can_paginate(name) for name in PAGINATED)
    assert client.waiter_names == ["node_associated"]
    waiter = client.get_waiter("node_associated")
    assert (waiter.config.delay, waiter.config.max_attempts) == (15, 15)


def test_client_sends_json_1_1_to_the_endpoint(exported: Path, sdk_without_opsworkscm: Path) -> None:
    client = _client(_session(exported, sdk_without_opsworkscm), endpoint_url=ENDPOINT)
    sent: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        sent.update(url=request.url, headers=request.headers, body=request.body)
        raise _Sent

    client.meta.events.register("before-send.opsworkscm.*", capture)
    with pytest.raises(_Sent):
        client.describe_servers(ServerName="my-chef")
    assert sent["url"] == ENDPOINT + "/"
    assert sent["headers"]["X-Amz-Target"] == b"OpsWorksCM_V2016_11_01.DescribeServers"
    assert sent["headers"]["Content-Type"] == b"application/x-amz-json-1.1"
    assert b"/us-east-1/opsworks-cm/aws4_request" in sent["headers"]["Authorization"]
    assert json.loads(sent["body"]) == {"ServerName": "my-chef"}


def test_data_path_puts_the_export_first(exported: Path) -> None:
    # AWS_DATA_PATH / data_path: the exported model wins even over a built-in one.
    session = botocore.session.Session()
    session.set_config_variable("data_path", str(exported))
    assert session.get_component("data_loader").search_paths[0] == str(exported)
    client = _client(session)
    assert client.meta.service_model.documentation == SERVICE.documentation
    # cmhost has no public address: without an endpoint URL the ruleset says so.
    with pytest.raises(EndpointResolutionError, match="explicit endpoint"):
        client.describe_servers()
