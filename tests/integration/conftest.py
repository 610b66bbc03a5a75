"""Fixtures of the boto3 integration tests (the `cmhost` and `client` fixtures are shared)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.helpers import OTHER_ACCOUNT, REGIONS, client_for, issue_key
from tests.support import Cmhost


@pytest.fixture(scope="module")
def region_pool(cmhost: Cmhost) -> Iterator[str]:
    return iter(REGIONS)


@pytest.fixture
def region(region_pool: Iterator[str]) -> str:
    """A region nobody in this module has used yet: the account's view of it is empty."""
    return next(region_pool)


@pytest.fixture
def rclient(cmhost: Cmhost, region: str) -> Any:
    """A client of the development account in a region of its own."""
    return cmhost.client(region=region)


@pytest.fixture(scope="module")
def other_key(cmhost: Cmhost) -> dict[str, str]:
    """An access key of a second account, issued with `cmhost keys create`."""
    return issue_key(cmhost, OTHER_ACCOUNT)


@pytest.fixture(scope="module")
def other_client(cmhost: Cmhost, other_key: dict[str, str]) -> Any:
    return client_for(cmhost, other_key)
