"""Housekeeping: the temporary files that crashed writers left behind are removed."""

from __future__ import annotations

from pathlib import Path

from cmhost import tempfiles
from cmhost.service.runtime import Runtime
from cmhost.storage.blobs import DirectoryBlobStore
from cmhost.workflows.background import Every


class TempSweeper:
    """A worker ticker: at its first tick (when the worker starts) and then every `interval`
    seconds of the job clock, removes the stale temporary files of the blob directory and of
    the engines' state (`tempfiles.sweep`). Periodic, not only at start-up: in a team of
    processes the one that crashed may never start again."""

    def __init__(self, rt: Runtime, interval: float = 60.0) -> None:
        self.rt = rt
        self.interval = interval
        self._every = Every(interval)

    def roots(self) -> list[Path]:
        roots = [self.rt.settings.data_dir / "engines"]
        if isinstance(self.rt.blobs, DirectoryBlobStore):
            roots.append(self.rt.blobs.root)
        return roots

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if not self._every.due(now):
            return 0
        for root in self.roots():
            tempfiles.sweep(root)
        return 0  # nothing for the worker to run because of it
