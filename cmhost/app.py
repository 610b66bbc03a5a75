"""The app: built once at start-up, it owns the database, clock, drivers, worker and HTTP."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cmhost import __version__
from cmhost.api.admin import AdminApp
from cmhost.api.cloudtrail import CloudTrail, cloudtrail_service
from cmhost.api.cloudtrail_records import OpsWorksCMDescriber, console_failures
from cmhost.api.fault_hook import fault_hook
from cmhost.api.handlers import OpsWorksCM
from cmhost.api.model import SERVICE
from cmhost.api.protocol import AwsJsonApp, OperationHooks, Receive, Scope, Send
from cmhost.api.scrape import PATH as METRICS_PATH
from cmhost.api.scrape import ScrapeApp
from cmhost.api.sigv4 import KeyRecord, SigV4Verifier
from cmhost.api.throttle import TokenBuckets
from cmhost.config import Settings
from cmhost.console.app import ConsoleApp
from cmhost.engines.base import DriverContext, EngineDriver, EngineFamily
from cmhost.engines.embedded import EmbeddedDriver
from cmhost.logs import AccessLog
from cmhost.observability.families import Metrics
from cmhost.observability.files import MetricFiles, host_directory
from cmhost.observability.gauges import DatabaseGauges
from cmhost.service.access import Access
from cmhost.service.access_guard import Guard
from cmhost.service.artifacts import sign_key
from cmhost.service.audit import AuditTrail
from cmhost.service.audit_delivery import AuditDelivery, AuditPruner
from cmhost.service.credential_pool import CredentialPool, PoolFiller
from cmhost.service.faults import Faults, FaultTicker
from cmhost.service.faults_holds import held_drivers
from cmhost.service.faults_jobs import failing_jobs
from cmhost.service.health import HealthMonitor
from cmhost.service.housekeeping import TempSweeper
from cmhost.service.jobs import job_handlers
from cmhost.service.keys import IssuedKey, KeyDirectory, issue_key, write_last_used
from cmhost.service.pagination import Pager
from cmhost.service.retention import EventPruner, JobPruner
from cmhost.service.runtime import Drivers, Runtime
from cmhost.service.schedules import Scheduler
from cmhost.storage import iam, identity, repo
from cmhost.storage.blobs import BlobNotFound, open_blob_store
from cmhost.storage.db import Database, WouldBlock
from cmhost.storage.dbfile import DatabaseNotWritable, make_private
from cmhost.storage.secrets import MasterKeyError, SecretBox, load_or_create_master_key
from cmhost.storage.writable import WritableProbe
from cmhost.workflows.clock import VirtualClock, make_clock
from cmhost.workflows.jobs import Enqueuer
from cmhost.workflows.worker import Worker

log = logging.getLogger("cmhost")

CLOCK_OFFSET_KEY = "virtual_clock_offset"
MASTER_CHECK_KEY = "master_key_check"
MASTER_CHECK_TEXT = "cmhost master key check"


def open_database(settings: Settings) -> tuple[Database, SecretBox]:
    """The migrated database and the secret box, with the master key checked against it.

    Everything that can refuse the start does so before anything is written: a data
    directory that belongs to another database, a damaged or unreachable database, a
    database made with a master key that is missing (no new key is written then).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private(settings.data_dir, 0o700)  # it holds engine keys and the database
    db = Database(settings.resolved_database_url)
    try:
        found = identity.examine(db, settings.data_dir)
        identity.check(found, accept_new=settings.accept_new_database)
        box = SecretBox(_master_key(settings, found))
        if db.file is not None:
            db.file.create()  # 0600; its -wal and -shm take its mode
            db.file.secure()  # made by an older cmhost: 0644
        db.upgrade()
        _check_master_key(db, box, settings)
        identity.claim(db, settings.data_dir)
    except (SQLAlchemyError, DatabaseNotWritable) as exc:
        db.dispose()
        problem = db.opening_problem(exc)
        if problem is None:
            raise
        raise problem from None
    except BaseException:
        db.dispose()
        raise
    return db, box


def _master_key(settings: Settings, found: identity.Found) -> bytes:
    """The master key; made only for a database that has none yet."""
    key_file = settings.resolved_master_key_file
    made_with_key = MASTER_CHECK_KEY in found.meta
    try:
        return load_or_create_master_key(key_file, create=not made_with_key)
    except MasterKeyError:
        if made_with_key and not key_file.exists() and not os.environ.get("CMHOST_MASTER_KEY"):
            raise MasterKeyError(
                f"the master key file {key_file} does not exist, but {found.where} was made "
                "with a master key: put the original key file back (or give it with "
                "--master-key-file, CMHOST_MASTER_KEY_FILE or CMHOST_MASTER_KEY); no new key "
                "was written") from None
        raise


def _check_master_key(db: Database, box: SecretBox, settings: Settings) -> None:
    """Store the key's check in a new database; check the key against a used one's."""
    try:
        check = _stored_master_check(db, box)
    except IntegrityError:  # another process starting at this moment stored its own first
        check = _stored_master_check(db, box)
    if check is None:
        return
    try:
        box.decrypt(check, MASTER_CHECK_KEY)
    except MasterKeyError:
        source = ("CMHOST_MASTER_KEY" if os.environ.get("CMHOST_MASTER_KEY")
                  else str(settings.resolved_master_key_file))
        raise MasterKeyError(
            f"the master key ({source}) is not the key this database was created "
            "with; start cmhost with the original key (--master-key-file, "
            "CMHOST_MASTER_KEY_FILE or CMHOST_MASTER_KEY)") from None


def _stored_master_check(db: Database, box: SecretBox) -> str | None:
    """The database's master key check; None when there was none and this key's is stored."""
    with db.write() as conn:
        check = repo.get_meta(conn, MASTER_CHECK_KEY)
        if check is None:
            repo.set_meta(conn, MASTER_CHECK_KEY, box.encrypt(MASTER_CHECK_TEXT, MASTER_CHECK_KEY))
        return check


def build_drivers(settings: Settings) -> Drivers:
    """The embedded driver for both engines, and the real ones configuration asks for.

    Servers keep the driver they were created with, so the embedded drivers stay available
    even when new servers go to a real engine.
    """
    low, high = settings.port_range
    settings.check_puppetdb()
    ctx = DriverContext(data_dir=settings.data_dir, engine_host=settings.engine_host,
                        port_min=low, port_max=high, java_heap=settings.java_heap,
                        puppetdb_database_url=(settings.puppetdb_database_url
                                               if settings.puppetdb else None))
    embedded: dict[EngineFamily, EngineDriver] = {
        "Chef": EmbeddedDriver(ctx, "Chef"), "Puppet": EmbeddedDriver(ctx, "Puppet")}
    chosen = dict(embedded)
    if settings.puppet_driver == "puppetserver":
        from cmhost.engines.puppetserver import PuppetServerDriver

        chosen["Puppet"] = PuppetServerDriver(ctx)
    elif settings.puppet_driver != "embedded":
        raise ValueError(f"unknown Puppet driver {settings.puppet_driver!r}")
    if settings.chef_driver == "goiardi":
        from cmhost.engines.goiardi import GoiardiDriver

        chosen["Chef"] = GoiardiDriver(ctx)
    elif settings.chef_driver != "embedded":
        raise ValueError(f"unknown Chef driver {settings.chef_driver!r}")
    drivers = Drivers(by_family=chosen)
    for family, driver in embedded.items():
        drivers.by_name.setdefault((family, driver.name), driver)
    return drivers


class CmhostApp:
    """The ASGI application and everything it owns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db, self.box = open_database(settings)
        self.clock = make_clock(settings.clock, self._stored_offset(),
                                shared_offset=self._stored_offset)
        self.enqueuer = Enqueuer()
        self.runtime = Runtime(db=self.db, clock=self.clock, box=self.box,
                               drivers=build_drivers(settings), settings=settings,
                               enqueuer=self.enqueuer,
                               blobs=open_blob_store(settings.blob_url, settings.data_dir))
        handlers = job_handlers(self.runtime)
        # Counters and histograms in this process's metric files, summed by the scrape of any
        # process of the host (observability/files.py); an access line per request and step.
        self.metric_files = MetricFiles(host_directory(settings.data_dir))
        self.metrics = Metrics(self.metric_files, job_kinds=handlers)
        access = AccessLog(settings.log_format)
        self.worker = Worker(self.db, self.clock, handlers,
                             lease_seconds=settings.job_lease_seconds,
                             watchers=[self.metrics.job_step, access.job_step],
                             tickers=[Scheduler(self.runtime),
                                      HealthMonitor(self.runtime, settings.health_interval,
                                                    watch=self.metrics),
                                      EventPruner(self.runtime, settings.events_per_server),
                                      JobPruner(self.runtime), TempSweeper(self.runtime)])
        self.runtime.wake_worker = self.worker.wake
        self.credential_pool = CredentialPool(self.db, self.box, servers=settings.credential_pool,
                                              on_dry=self.metrics.credential_made_in_request)
        self.filler = PoolFiller(self.credential_pool)
        if self.credential_pool.enabled:
            self.runtime.credentials = self.credential_pool
        self.keys = KeyDirectory(self.db, self.box, allow_dev_key=settings.loopback)
        # Authorization and the audit trail of every operation, the API's and the console's
        # (service/access_guard.py); records delivered to the blob store by the worker.
        self.audit = AuditTrail(self.db, last_used=self.keys.take_last_used,
                                write_last_used=write_last_used)
        self.guard = Guard(Access(self.db, self.clock.now), self.audit, self.clock.now,
                           OpsWorksCMDescriber(), unavailable=self.db.unavailable,
                           key_used=self.keys.used)
        self.worker.tickers += [AuditDelivery(self.runtime),
                                AuditPruner(self.runtime, settings.audit_retention_days)]
        # Few threads: handlers hold the GIL most of the time, and more threads only contend.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cmhost-api")
        verifier = SigV4Verifier(self._lookup_key)
        throttle = TokenBuckets() if settings.throttle else None
        # What watches or shapes every API request (metrics, logs, faults) registers here.
        self.operation_hooks = OperationHooks()
        self.operation_hooks.after += [self.metrics.request_finished, access.request_finished]
        table = OpsWorksCM(self.runtime).table()
        cloudtrail = cloudtrail_service(
            self.guard.wrap(CloudTrail(self.db, Pager(self.box)).table()), self._lookup_key)
        self.aws = AwsJsonApp(self.guard.wrap(table), verifier, throttle, self.executor,
                              inline_reads=self._read_inline,
                              unavailable=self.db.unavailable, hooks=self.operation_hooks,
                              guard=self.guard, others=(cloudtrail,), key_used=self.keys.used)
        self.console = ConsoleApp(self.runtime, self.guard.wrap(table, console=True), self.keys,
                                  self.executor, self.operation_hooks)
        self.operation_hooks.after.append(console_failures(self.guard))
        self.admin = AdminApp(self.clock, self.advance, self.health, self.executor,
                              self.read_log, loopback=settings.loopback,
                              admin_token=settings.admin_token)
        self._metrics_registry = CollectorRegistry(auto_describe=False)
        self._metrics_registry.register(self.metric_files)
        self._metrics_registry.register(DatabaseGauges(
            self.db, self.clock, self.credential_pool, job_kinds=handlers,
            drivers=list(self.runtime.drivers.by_name)))
        self.scrape = ScrapeApp(self._exposition, self.executor,
                                metrics_token=settings.metrics_token)
        # Fault injection (/_cmhost/faults): error and latency faults answer operations, a
        # fail_job fault fails the job it is armed for, a server_status fault holds servers
        # in a status (health checks report it) until its time on the clock is up.
        self.faults = Faults(self.runtime, SERVICE.operations)
        self.operation_hooks.before.append(fault_hook(self.faults, self.executor))
        self.worker.handlers = failing_jobs(self.faults, self.runtime, self.worker.handlers)
        self.worker.tickers.append(FaultTicker(self.faults))
        self.runtime.drivers = held_drivers(self.runtime.drivers, self.faults.holds)
        self.admin.attach(self.faults, self._issue_admin_key)
        self.started_at = time.time()

    def _read_inline(self, call: Callable[[], Any]) -> tuple[bool, Any]:
        """Reads served on the event loop: on SQLite all of them (a local read costs less
        than a thread hop); on a database server those the cache answers whole (a
        DescribeServers page no server changed since), the others go to a thread."""
        if self.db.is_sqlite:
            return True, call()
        try:
            with self.db.cached_only():
                return True, call()
        except WouldBlock:
            return False, None

    def _issue_admin_key(self, account: str, user: str) -> IssuedKey:
        """POST /_cmhost/keys: a key of `user` when the account has that user, else the
        account's root key (what every issued key was before users existed)."""
        with self.db.read() as conn:
            known = iam.get_user(conn, account, user) is not None
        return issue_key(self.db, self.box, account=account, user=user if known else None,
                         now=time.time())

    def _lookup_key(self, access_key_id: str) -> KeyRecord | None:
        key = self.keys(access_key_id)
        if key is None:
            return None
        return KeyRecord(key.access_key_id, key.secret_access_key, key.account, key.principal_arn)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self.audit.start()
        if self.settings.run_worker:
            self.worker.start()
            self.filler.start()

    def stop(self) -> None:
        self.filler.stop()
        self.worker.stop()
        for driver in {id(d): d for d in self.runtime.drivers.by_name.values()}.values():
            driver.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.audit.stop()
        self.metric_files.close()
        self.db.dispose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/_cmhost/"):
                await self.admin(scope, receive, send)
            elif ConsoleApp.serves(scope["path"]):  # /console/..., /servers/<name>/dashboard/...
                await self.console(scope, receive, send)
            elif scope["path"] == METRICS_PATH:
                await self.scrape(scope, receive, send)
            else:
                await self.aws(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- /metrics ---------------------------------------------------------------------

    def _exposition(self) -> bytes:
        """The scrape's answer: this host's counters and the database's gauges."""
        return generate_latest(self._metrics_registry)

    # --- /_cmhost/ --------------------------------------------------------------------

    @cached_property
    def _writable(self) -> WritableProbe:
        return WritableProbe(self.db)

    def health(self) -> dict[str, Any]:
        # Whether the database takes writes: one that answers reads but takes no writes
        # (read-only, full, its file gone) cannot serve. Asked at most every 2 s per
        # process and without committing while all is well (storage/writable.py): anyone
        # may call this.
        database = self._writable.state()
        pool = self.credential_pool
        try:
            entries = pool.counts() if database == "ok" else {}
        except Exception:  # noqa: BLE001 - as above
            entries = {}
        return {"status": "ok" if database == "ok" else "degraded", "version": __version__,
                "database": database, "clock": self.clock.mode,
                "uptime": round(time.time() - self.started_at, 3),
                "credential_pool": {"servers": pool.servers, "entries": entries,
                                    "made_in_requests": pool.made_here}}

    def read_log(self, key: str, signature: str) -> bytes | None:
        """A backup log, if the signature is the one its S3LogUrl carries."""
        expected = sign_key(self.box, key).encode()
        if not hmac.compare_digest(signature.encode("utf-8", "surrogateescape"), expected):
            return None
        try:
            return self.runtime.blobs.get(key)
        except (BlobNotFound, ValueError):
            return None

    def advance(self, seconds: float, run: bool = True) -> None:
        """Move the virtual clock forward, running each job at its own due time on the way.

        With run=False only the (shared) clock moves: the worker processes run what became due.
        """
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        if not run:
            clock.advance_to(clock.now() + seconds)
            self._save_offset(clock)
            return
        with self.worker.exclusive():
            target = clock.now() + seconds
            while True:
                due = self.worker.next_due()
                if due is None or due > target:
                    break
                clock.advance_to(due)
                self._save_offset(clock)
                fired = self.worker.tick()
                if self.worker.run_due() == 0 and fired == 0 and due <= clock.now():
                    break  # due, but leased by a worker in another process: it runs there
            clock.advance_to(target)
            self._save_offset(clock)
            self.worker.tick()
            self.worker.run_due()
        self.worker.wake()

    def _stored_offset(self) -> float:
        with self.db.read() as conn:
            return float(repo.get_meta(conn, CLOCK_OFFSET_KEY) or 0.0)

    def _save_offset(self, clock: VirtualClock) -> None:
        with self.db.write() as conn:
            repo.set_meta(conn, CLOCK_OFFSET_KEY, repr(clock.offset))
