"""The Code Manager process's deployments: a queue worked by one thread, in order, with the
per-environment statuses Puppet Enterprise's Code Manager reports (new, queued, deploying,
complete, failed), and an event of the server for each deployment's outcome."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cmhost.engines.code_manager.files import record_event, take_requests
from cmhost.engines.r10k import (
    CodeDeployer,
    Deployed,
    DeployError,
    ListingFailed,
    live_environments,
)

log = logging.getLogger("cmhost.code_manager")

REQUEST_POLL = 1.0  # how often the worker looks for deployments cmhost asked for
KEEP_FAILED = 50


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass
class DeployJob:
    """One request's deployments: an id per environment, the results once done."""

    environments: list[str]
    deploy_all: bool
    modules: bool
    reason: str
    ids: dict[str, int]
    queued_at: float
    started: bool = False
    results: dict[str, Deployed] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    def entries(self, *, answered_now: bool) -> list[dict[str, object]]:
        """The PE answer for each environment: its status (and, once done, its
        deploy-signature or error)."""
        out: list[dict[str, object]] = []
        for name in self.environments:
            entry: dict[str, object] = {"environment": name, "id": self.ids[name]}
            result = self.results.get(name)
            if result is None:
                entry["status"] = "new" if answered_now else (
                    "deploying" if self.started else "queued")
            elif result.ok:
                entry["status"] = "complete"
                entry["deploy-signature"] = result.signature
            else:
                entry["status"] = "failed"
                entry["error"] = result.error.as_json() if result.error else {}
            out.append(entry)
        return out


class DeployQueue:
    """Deployments of one server, one at a time (r10k's lock also keeps out any other
    process), each recorded as an event of the server."""

    def __init__(self, deployer: CodeDeployer, root: Path) -> None:
        self.deployer = deployer
        self.root = root
        self._jobs: queue.Queue[DeployJob] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list[DeployJob] = []  # queued or deploying, oldest first
        self._failed: deque[dict[str, object]] = deque(maxlen=KEEP_FAILED)
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- requests ---------------------------------------------------------------------

    def submit(self, environments: list[str] | None, *, modules: bool = True,
               reason: str) -> DeployJob:
        """Queue a deployment of the named environments (None: all of them, as the control
        repository's branches say now)."""
        names = list(dict.fromkeys(environments)) if environments is not None else self._all()
        with self._lock:
            job = DeployJob(environments=names, deploy_all=environments is None,
                            modules=modules, reason=reason,
                            ids={n: next(self._ids) for n in names}, queued_at=time.time())
            self._pending.append(job)
        self._jobs.put(job)
        return job

    def _all(self) -> list[str]:
        try:
            return self.deployer.environments()
        except ListingFailed:
            # The deployment fails (and says why) for each environment served now.
            return live_environments(self.root) or ["production"]

    def status(self) -> dict[str, object]:
        """GET /deploys/status: what is new, queued and deploying, and recent failures."""
        groups: dict[str, list[dict[str, object]]] = {"new": [], "queued": [],
                                                      "deploying": [], "failed": []}
        with self._lock:
            for job in self._pending:
                for name in job.environments:
                    if name in job.results:
                        continue
                    state = "deploying" if job.started else "queued"
                    groups[state].append({"environment": name, "id": job.ids[name],
                                          "queued-at": _iso(job.queued_at)})
            groups["failed"] = list(self._failed)
        return {"deploys-status": groups}

    # --- the worker -------------------------------------------------------------------

    def start(self) -> None:
        self._take_requests()  # asked for before this process started: queued first
        self._thread = threading.Thread(target=self._work, name="code-manager-deploys",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _take_requests(self) -> None:
        for reason in take_requests(self.root):
            self.submit(None, reason=reason)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=REQUEST_POLL)
            except queue.Empty:
                try:
                    self._take_requests()
                except OSError:
                    log.exception("reading deploy requests failed")
                continue
            try:
                self._run(job)
            except Exception:  # the worker must outlive any one deployment
                log.exception("deployment %s failed", job.ids)
                job.done.set()

    def _run(self, job: DeployJob) -> None:
        with self._lock:
            job.started = True
        log.info("deploying %s (%s)", ", ".join(job.environments) or "nothing", job.reason)
        results = self.deployer.deploy(None if job.deploy_all else job.environments,
                                       modules=job.modules)
        by_name = {r.environment: r for r in results}
        with self._lock:
            for name in job.environments:
                result = by_name.get(name) or Deployed(name, None, _not_deployed(name))
                job.results[name] = result
                if not result.ok and result.error is not None:
                    self._failed.append({"environment": name, "id": job.ids[name],
                                         "queued-at": _iso(job.queued_at),
                                         "error": result.error.as_json()})
            self._pending.remove(job)
        for message in deploy_events(job):
            record_event(self.root, message)
        job.done.set()
        for name, result in job.results.items():
            log.info("environment %s: %s", name, result.signature if result.ok else
                     (result.error.msg if result.error else "failed"))


def _not_deployed(name: str) -> DeployError:
    return DeployError(f"The control repository has no branch for environment '{name}' "
                       "any more.", details={"corrected-name": name})


def deploy_events(job: DeployJob) -> list[str]:
    """The server's events for a finished deployment: one for what was deployed, one for
    each environment that failed."""
    done = [r for r in job.results.values() if r.ok]
    failed = [r for r in job.results.values() if not r.ok]
    events = []
    if done:
        listed = ", ".join(f"{r.environment} at {(r.signature or '')[:12]}" for r in done)
        events.append(f"Code deployed ({job.reason}): {listed}.")
    for result in failed:
        why = " ".join((result.error.msg if result.error else "unknown error").split())
        events.append(f"Code deployment of environment {result.environment} failed "
                      f"({job.reason}); the environment is left as it was. {why}")
    if not job.results:
        events.append(f"Code deployment ({job.reason}): the control repository has no "
                      "branches; nothing was deployed.")
    return events
