"""Scraping GET /metrics in the tests: fetched over HTTP, parsed by prometheus_client's parser."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.support import Cmhost


@dataclass(frozen=True)
class Scrape:
    """The samples of one scrape, and the families they came in."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]  # family name -> type

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples `name` whose labels include `labels` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, found), v in self.samples.items() if n == name and wanted <= found)

    def has(self, name: str, **labels: str) -> bool:
        wanted = set(labels.items())
        return any(n == name and wanted <= found for n, found in self.samples)

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(found)[label] for n, found in self.samples
                if n == name and label in dict(found)}


def fetch(cm: Cmhost, *, token: str | None = None, headers: dict[str, str] | None = None,
          method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request for /metrics: status, headers (lower-case names), body."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", cm.port, timeout=30)
    try:
        conn.request(method, "/metrics", headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def scrape(cm: Cmhost, token: str | None = None) -> Scrape:
    status, headers, body = fetch(cm, token=token)
    assert status == 200, body[:500]
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice in one scrape"
            samples[key] = sample.value
    return Scrape(samples, types)


def check_histogram(found: Scrape, name: str, **labels: str) -> None:
    """Buckets cumulative and complete: each at least the one below it, +Inf equal to
    _count."""
    buckets = sorted(((float(dict(key)["le"]), value) for (n, key), value in
                      found.samples.items()
                      if n == f"{name}_bucket" and set(labels.items()) <= key),
                     key=lambda b: b[0])
    assert buckets and buckets[-1][0] == float("inf"), buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets
    assert counts[-1] == found.value(f"{name}_count", **labels)
