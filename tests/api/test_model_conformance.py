"""cmhost's model agrees with the opsworkscm model shipped in botocore 1.40.18."""

from __future__ import annotations

from typing import Any

import botocore.loaders
import pytest

from cmhost.api.export import paginators_document, service_document, waiters_document
from cmhost.api.model import SERVICE


@pytest.fixture(scope="module")
def loader() -> botocore.loaders.Loader:
    # Only botocore's own data: AWS_DATA_PATH or ~/.aws/models must not sneak in an export.
    return botocore.loaders.Loader(
        extra_search_paths=[botocore.loaders.Loader.BUILTIN_DATA_PATH],
        include_default_search_paths=False,
    )


@pytest.fixture(scope="module")
def botocore_service(loader: botocore.loaders.Loader) -> dict[str, Any]:
    return loader.load_service_model("opsworkscm", "service-2", "2016-11-01")


def _without_docs(value: Any) -> Any:
    """The document with every `documentation` removed and `required` lists as sorted lists."""
    if isinstance(value, dict):
        out = {k: _without_docs(v) for k, v in value.items() if k != "documentation"}
        if isinstance(out.get("required"), list):
            out["required"] = sorted(out["required"])
        return out
    if isinstance(value, list):
        return [_without_docs(v) for v in value]
    return value


def test_botocore_is_the_pinned_release() -> None:
    assert botocore.__version__ == "1.40.18"


def test_metadata_is_identical(botocore_service: dict[str, Any]) -> None:
    assert service_document()["metadata"] == botocore_service["metadata"]
    assert service_document()["version"] == botocore_service["version"]


def test_same_19_operations(botocore_service: dict[str, Any]) -> None:
    assert set(SERVICE.operations) == set(botocore_service["operations"])
    assert len(SERVICE.operations) == 19


@pytest.mark.parametrize("name", sorted(SERVICE.operations))
def test_operation_matches(botocore_service: dict[str, Any], name: str) -> None:
    ours = _without_docs(service_document()["operations"][name])
    theirs = _without_docs(botocore_service["operations"][name])
    assert ours == theirs


def test_same_shape_names(botocore_service: dict[str, Any]) -> None:
    assert set(SERVICE.shapes) == set(botocore_service["shapes"])


@pytest.mark.parametrize("name", sorted(SERVICE.shapes))
def test_shape_matches(botocore_service: dict[str, Any], name: str) -> None:
    # type, members (names, target shapes, deprecated), required, min, max, pattern, enum,
    # sensitive, exception: everything but documentation must be identical.
    ours = _without_docs(service_document()["shapes"][name])
    theirs = _without_docs(botocore_service["shapes"][name])
    assert ours == theirs


def test_member_order_matches(botocore_service: dict[str, Any]) -> None:
    for name, shape in SERVICE.shapes.items():
        theirs = list(botocore_service["shapes"][name].get("members", {}))
        assert [m.name for m in shape.members] == theirs, name


def test_paginators_are_identical(loader: botocore.loaders.Loader) -> None:
    theirs = loader.load_service_model("opsworkscm", "paginators-1", "2016-11-01")
    assert paginators_document() == theirs


def test_waiters_are_identical(loader: botocore.loaders.Loader) -> None:
    theirs = loader.load_service_model("opsworkscm", "waiters-2", "2016-11-01")
    assert waiters_document() == theirs


def test_every_operation_and_member_is_documented() -> None:
    for op in SERVICE.operations.values():
        assert op.documentation, op.name
    for shape in SERVICE.shapes.values():
        for member in shape.members:
            assert member.documentation, f"{shape.name}.{member.name}"


def test_operation_table_is_keyed_by_name() -> None:
    for name, op in SERVICE.operations.items():
        assert op.name == name
        assert op.input is SERVICE.shapes[op.input.name]
        assert op.output is SERVICE.shapes[op.output.name]
        for error in op.errors:
            assert SERVICE.shapes[error].exception
