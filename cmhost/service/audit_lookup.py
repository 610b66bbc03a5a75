"""Reading the audit trail: CloudTrail's LookupEvents (attributes, time range, pages) and the
`cmhost audit` command, both newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cmhost.service.audit import record_text
from cmhost.service.errors import ServiceError
from cmhost.service.pagination import Pager
from cmhost.storage import audit as store
from cmhost.storage.db import Database

# LookupEvents' attribute keys (CloudTrail's LookupAttributeKey).
ATTRIBUTE_KEYS = ("EventId", "EventName", "ReadOnly", "Username", "ResourceType",
                  "ResourceName", "EventSource", "AccessKeyId")
MAX_RESULTS = 50  # LookupEvents' largest page (and its default)


class InvalidLookupAttributesException(ServiceError):
    code = "InvalidLookupAttributesException"


class InvalidTimeRangeException(ServiceError):
    code = "InvalidTimeRangeException"


class InvalidMaxResultsException(ServiceError):
    code = "InvalidMaxResultsException"


class InvalidNextTokenException(ServiceError):
    code = "InvalidNextTokenException"


class InvalidEventCategoryException(ServiceError):
    code = "InvalidEventCategoryException"


@dataclass(frozen=True)
class Query:
    account: str | None
    region: str | None
    attributes: tuple[tuple[str, str], ...] = ()
    start: float | None = None
    end: float | None = None

    def scope(self) -> str:
        return json.dumps(["LookupEvents", self.account, self.region, self.attributes,
                           self.start, self.end])


def check_query(query: Query) -> None:
    if len(query.attributes) > 1:
        raise InvalidLookupAttributesException(
            "You can specify only one lookup attribute per request.")
    for key, value in query.attributes:
        if key not in ATTRIBUTE_KEYS:
            raise InvalidLookupAttributesException(
                f"The lookup attribute key {key!r} is not one of: {', '.join(ATTRIBUTE_KEYS)}.")
        if not value or len(value) > 2000:
            raise InvalidLookupAttributesException(
                "A lookup attribute value must be 1 to 2000 characters long.")
    if query.start is not None and query.end is not None and query.start > query.end:
        raise InvalidTimeRangeException("The start time is after the end time.")


def records(db: Database, query: Query, *, limit: int, after: tuple[float, int] | None = None,
            one_attribute: bool = True) -> tuple[list[Any], tuple[float, int] | None]:
    """Up to `limit` rows newest first, and the cursor after them (None at the end).
    LookupEvents takes one attribute; `cmhost audit` combines several."""
    if one_attribute:
        check_query(query)
    with db.read() as conn:
        rows = store.lookup(conn, account=query.account, region=query.region,
                            attributes=query.attributes, start=query.start, end=query.end,
                            after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = list(rows[:limit])
    cursor = (float(rows[-1]["event_time"]), int(rows[-1]["seq"])) if more and rows else None
    return rows, cursor


def lookup_events(db: Database, pager: Pager, query: Query, *, max_results: int | None,
                  next_token: str | None) -> dict[str, Any]:
    """LookupEvents' output: Events (with each CloudTrailEvent) and NextToken."""
    if max_results is not None and not 1 <= max_results <= MAX_RESULTS:
        raise InvalidMaxResultsException(f"MaxResults must be 1 to {MAX_RESULTS}.")
    after = None
    if next_token is not None:
        try:
            decoded = pager.decode(next_token, query.scope())
            after = (float(decoded[0]), int(decoded[1]))
        except (ServiceError, ValueError, IndexError, TypeError):
            raise InvalidNextTokenException("The NextToken is not valid for this request."
                                            ) from None
    rows, cursor = records(db, query, limit=max_results or MAX_RESULTS, after=after)
    out: dict[str, Any] = {"Events": [event(r) for r in rows]}
    if cursor is not None:
        out["NextToken"] = pager.encode(query.scope(), list(cursor))
    return out


def event(row: Any) -> dict[str, Any]:
    """One LookupEvents Event."""
    out: dict[str, Any] = {
        "EventId": row["event_id"], "EventName": row["event_name"],
        "ReadOnly": "true" if row["read_only"] else "false",
        "EventTime": row["event_time"], "EventSource": row["event_source"],
        "Username": row["user_name"], "CloudTrailEvent": record_text(row)}
    if row["access_key_id"]:
        out["AccessKeyId"] = row["access_key_id"]
    resources: Sequence[dict[str, str]] = []
    if row["resource_type"]:
        resources = [{"ResourceType": row["resource_type"],
                      "ResourceName": row["resource_name"]}]
    out["Resources"] = list(resources)
    return out
