"""Token buckets: burst of 10, refill at 5 per second, per key — on a fake clock."""

from __future__ import annotations

from cmhost.api.throttle import TokenBuckets


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_of_ten_then_throttled() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock=clock)
    assert [buckets.allow("k") for _ in range(11)] == [True] * 10 + [False]


def test_refills_at_five_per_second() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock=clock)
    for _ in range(10):
        buckets.allow("k")
    clock.t += 0.2  # one token
    assert buckets.allow("k") is True
    assert buckets.allow("k") is False
    clock.t += 1.0  # five tokens
    assert sum(buckets.allow("k") for _ in range(10)) == 5
    clock.t += 100  # never more than the burst
    assert sum(buckets.allow("k") for _ in range(20)) == 10


def test_keys_are_independent() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock=clock)
    for _ in range(10):
        buckets.allow(("111111111111", "DescribeServers"))
    assert buckets.allow(("111111111111", "DescribeServers")) is False
    assert buckets.allow(("111111111111", "DescribeEvents")) is True
    assert buckets.allow(("222222222222", "DescribeServers")) is True


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock=clock, max_keys=100)
    for i in range(1000):
        buckets.allow(i)
        clock.t += 1
    assert len(buckets._buckets) <= 100
