"""CloudTrail's LookupEvents on cmhost's endpoint (JSON 1.1, SigV4 service `cloudtrail`), so
`aws cloudtrail lookup-events --endpoint-url ...` and boto3's cloudtrail client read the audit
trail. An account sees only its own records, of the region its request is signed for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cmhost.api.handlers import Handler, operation
from cmhost.api.protocol import OtherService
from cmhost.api.sigv4 import KeyLookup, SigV4Verifier
from cmhost.service.audit_lookup import (
    ATTRIBUTE_KEYS,
    MAX_RESULTS,
    InvalidEventCategoryException,
    InvalidLookupAttributesException,
    InvalidMaxResultsException,
    Query,
    lookup_events,
)
from cmhost.service.context import Caller
from cmhost.service.errors import ValidationException
from cmhost.service.pagination import Pager
from cmhost.storage.db import Database

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
_MEMBERS = {"LookupAttributes", "StartTime", "EndTime", "EventCategory", "MaxResults",
            "NextToken"}


def _time(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationException(f"{name} must be a timestamp (epoch seconds).")
    return float(value)


def validate(name: str, params: Mapping[str, Any]) -> None:
    """LookupEvents' input, as CloudTrail checks it."""
    unknown = set(params) - _MEMBERS
    if unknown:
        raise ValidationException(f"LookupEvents has no member {min(unknown)!r}.")
    attributes = params.get("LookupAttributes")
    if attributes is not None:
        if not isinstance(attributes, list) or not all(isinstance(a, dict) for a in attributes):
            raise InvalidLookupAttributesException(
                "LookupAttributes must be a list of {AttributeKey, AttributeValue}.")
        for item in attributes:
            key, value = item.get("AttributeKey"), item.get("AttributeValue")
            if key not in ATTRIBUTE_KEYS:
                raise InvalidLookupAttributesException(
                    f"AttributeKey {key!r} is not one of: {', '.join(ATTRIBUTE_KEYS)}.")
            if not isinstance(value, str):
                raise InvalidLookupAttributesException("AttributeValue must be a string.")
    _time(params.get("StartTime"), "StartTime")
    _time(params.get("EndTime"), "EndTime")
    category = params.get("EventCategory")
    if category is not None and category != "insight":
        raise InvalidEventCategoryException("EventCategory must be insight.")
    limit = params.get("MaxResults")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_RESULTS):
        raise InvalidMaxResultsException(f"MaxResults must be 1 to {MAX_RESULTS}.")
    token = params.get("NextToken")
    if token is not None and not isinstance(token, str):
        raise ValidationException("NextToken must be a string.")


class CloudTrail:
    """The LookupEvents handler."""

    def __init__(self, db: Database, pager: Pager) -> None:
        self.db = db
        self.pager = pager

    def table(self) -> dict[str, Handler]:
        return {"LookupEvents": self.lookup_events}

    @operation("LookupEvents", reads_only=True)
    def lookup_events(self, caller: Caller, p: Mapping[str, Any]) -> dict[str, Any]:
        if p.get("EventCategory") == "insight":
            return {"Events": []}  # cmhost has no Insights events
        query = Query(account=caller.account, region=caller.region,
                      attributes=tuple((a["AttributeKey"], a["AttributeValue"])
                                       for a in p.get("LookupAttributes") or []),
                      start=_time(p.get("StartTime"), "StartTime"),
                      end=_time(p.get("EndTime"), "EndTime"))
        return lookup_events(self.db, self.pager, query, max_results=p.get("MaxResults"),
                             next_token=p.get("NextToken"))


def cloudtrail_service(handlers: Mapping[str, Handler], lookup: KeyLookup,
                       now: Callable[[], float] | None = None) -> OtherService:
    """CloudTrail as the protocol serves it: its own verifier (credential scope
    .../cloudtrail/aws4_request) over the same keys."""
    verifier = SigV4Verifier(lookup, service="cloudtrail") if now is None else \
        SigV4Verifier(lookup, service="cloudtrail", now=now)
    return OtherService(target_prefix=TARGET_PREFIX, verifier=verifier, handlers=handlers,
                        validate=validate)
