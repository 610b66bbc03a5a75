"""The credential pool: RSA keys and generated passwords made ahead of time by the workers.

A new server costs three 2048-bit RSA keys (its CA, its server certificate, the pivotal key or
the starter kit's client certificate) and, for a generated admin password, an scrypt hash:
about a quarter of a CPU second. CreateServer must answer with the CA and the one-time
credentials, so without a pool that work is done in the API process, and adding workers does
not make creation faster. With a pool, each worker keeps the pool topped up from a thread of
its own, and CreateServer takes what it needs (each entry once: it is deleted as it is taken).

- The pool holds `servers` servers' worth: 3 keys and one password of each engine per server.
- Entries are encrypted with the master key while they wait; a password is stored with its
  hash, and both leave the database when taken.
- A CreateServer that finds the pool empty in an API-only process (`serve --no-worker`) waits
  for the next entry while some worker's filler is alive (a heartbeat within
  FILLER_STALE_SECONDS), at most MAX_WAIT_SECONDS: the CPU work stays with the workers, so
  creation scales with them. With no filler alive it makes the credential itself at once. A
  process that runs its own worker makes what the pool lacks itself, without waiting: the CPU
  its filler would use is its own, and its request threads use the other cores meanwhile.
- `servers` = 0 turns the pool off: every credential is made in the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import pki
from cmhost.engines.attributes import generate_chef_password, generate_puppet_password
from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox
from cmhost.workflows.background import BackgroundLoop

log = logging.getLogger("cmhost.credential_pool")

RSA_2048 = "rsa-2048"
PASSWORD_KINDS = {"chef": "password-chef", "puppet": "password-puppet"}
# How many of each kind one server takes from the pool.
PER_SERVER = {RSA_2048: 3, "password-chef": 1, "password-puppet": 1}

FILLER_SEEN_KEY = "credential_pool_filler_seen"
HEARTBEAT_SECONDS = 5.0
FILLER_STALE_SECONDS = 15.0
MAX_WAIT_SECONDS = 30.0
# A dry pool is looked at again this often (or at once when a filler of this process makes
# something). Slow polling costs no throughput: the fillers keep making while the takers wait.
POLL_SECONDS = 0.25
# How long the answer to "is a filler alive?" is trusted.
ALIVE_CACHE_SECONDS = 1.0
IDLE_POLL_SECONDS = 1.0
FILL_BATCH = 8  # credentials made between two counts of the pool


def _context(kind: str) -> str:
    return f"credential-pool:{kind}"


def make_entry(kind: str) -> tuple[str, str | None]:
    """A new credential of `kind`: (secret, public part or None)."""
    if kind == RSA_2048:
        return pki.private_key_pem(pki.make_rsa_key(2048)), None
    password = (generate_chef_password() if kind == PASSWORD_KINDS["chef"]
                else generate_puppet_password())
    return password, pki.hash_password(password)


class CredentialPool:
    """The API side: hands out pooled credentials (a `pki.CredentialSupply`)."""

    def __init__(self, db: Database, box: SecretBox, *, servers: int,
                 max_wait: float = MAX_WAIT_SECONDS,
                 on_dry: Callable[[str], None] | None = None) -> None:
        self.db = db
        # Told the kind of each credential a request makes itself (metrics); must not raise.
        self.on_dry = on_dry
        self.box = box
        self.servers = max(0, servers)
        self.max_wait = max_wait
        self.targets = {kind: n * self.servers for kind, n in PER_SERVER.items()}
        self._takers = {kind: threading.Lock() for kind in PER_SERVER}
        self._produced = threading.Event()
        self._local_filler: PoolFiller | None = None
        self._alive_until = 0.0  # monotonic time until which a filler is known to be alive
        self._local = threading.local()  # keys a thread took for its block and has not used
        self.made_here = 0  # credentials this process made itself because the pool was dry

    @property
    def enabled(self) -> bool:
        return self.servers > 0

    # --- pki.CredentialSupply -----------------------------------------------------------

    def rsa_key(self) -> rsa.RSAPrivateKey | None:
        # A server needs three keys: a call with no spares takes as many as the block still
        # needs, up to three, in one statement; the block's later calls use the spares. (A
        # dry pool can hand out fewer: taking three again then would leave spares to return.)
        spares = self._spares()
        if not spares:
            needed = max(1, PER_SERVER[RSA_2048] - self._local.used)
            spares.extend(secret for secret, _ in self._take(RSA_2048, needed))
            if not spares:
                return None
        self._local.used += 1
        # Made by a worker and sealed with the master key since: no need to check it again.
        key = serialization.load_pem_private_key(spares.pop(0).encode("ascii"), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def password(self, kind: str) -> tuple[str, str] | None:
        taken = self._take(PASSWORD_KINDS[kind], 1)
        if not taken or taken[0][1] is None:
            return None
        return taken[0][0], taken[0][1]

    def done(self) -> None:
        """Keys taken for this thread's block and not used go back to the pool."""
        spares = self._spares()
        self._local.used = 0
        if not spares:
            return
        with self.db.write() as conn:
            for secret in spares:
                repo.add_pooled_credential(
                    conn, kind=RSA_2048, secret_enc=self.box.encrypt(secret, _context(RSA_2048)),
                    public=None, now=time.time())
        spares.clear()

    def _spares(self) -> list[str]:
        spares: list[str] | None = getattr(self._local, "spares", None)
        if spares is None:
            spares = self._local.spares = []
            self._local.used = 0  # keys this thread's block has used
        return spares

    # --- taking -------------------------------------------------------------------------

    def _take(self, kind: str, limit: int) -> list[tuple[str, str | None]]:
        """Up to `limit` entries of `kind`, waiting while the pool is dry and a filler is
        alive; none when the request is to make the credential itself."""
        if not self.enabled:
            return []
        deadline = time.monotonic() + self.max_wait
        # One thread of this process polls for each kind; the others queue behind it.
        if not self._takers[kind].acquire(timeout=self.max_wait):
            self._dry(kind, timed_out=True)
            return []
        try:
            while True:
                with self.db.statement() as conn:
                    rows = repo.take_pooled_credentials(conn, kind, limit)
                self._wake_filler()
                if rows:
                    return [(self.box.decrypt(r["secret_enc"], _context(kind)), r["public"])
                            for r in rows]
                if self._local_filler_running() or not self._filler_alive():
                    self._dry(kind, timed_out=False)
                    return []
                if time.monotonic() >= deadline:
                    self._dry(kind, timed_out=True)
                    return []
                self._produced.wait(POLL_SECONDS)
                self._produced.clear()
        finally:
            self._takers[kind].release()

    def _dry(self, kind: str, *, timed_out: bool) -> None:
        """The request makes this credential itself (no filler alive, or it waited too long)."""
        self.made_here += 1
        if self.on_dry is not None:
            self.on_dry(kind)
        if timed_out:
            log.warning("credential pool: no %s within %gs; making it in the request",
                        kind, self.max_wait)

    def _local_filler_running(self) -> bool:
        return self._local_filler is not None and self._local_filler.running

    def _filler_alive(self) -> bool:
        if time.monotonic() < self._alive_until:
            return True
        with self.db.read() as conn:
            seen = repo.get_meta(conn, FILLER_SEEN_KEY)
        try:
            alive = seen is not None and time.time() - float(seen) < FILLER_STALE_SECONDS
        except ValueError:
            alive = False
        if alive:
            self._alive_until = time.monotonic() + ALIVE_CACHE_SECONDS
        return alive

    def _wake_filler(self) -> None:
        if self._local_filler is not None:
            self._local_filler.wake()

    # --- for the filler -----------------------------------------------------------------

    def attach(self, filler: PoolFiller) -> None:
        self._local_filler = filler

    def produced(self) -> None:
        self._produced.set()

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return repo.pooled_credential_counts(conn)


class PoolFiller(BackgroundLoop):
    """The worker side: a thread that makes credentials while the pool is below its targets,
    neediest kind first, and says it is alive (FILLER_SEEN_KEY) every HEARTBEAT_SECONDS."""

    thread_name = "cmhost-credential-pool"

    def __init__(self, pool: CredentialPool) -> None:
        super().__init__()
        self.pool = pool
        self._beat_at = 0.0
        self.made = 0
        pool.attach(self)

    def start(self) -> None:
        if not self.pool.enabled or self.running:
            return
        self._start_thread()

    def neediest(self, counts: dict[str, int] | None = None) -> str | None:
        """The kind furthest below its target, or None when the pool is full."""
        counts = self.pool.counts() if counts is None else counts
        # Ties go to the kind listed first in PER_SERVER (keys: a server needs three).
        short = [(counts.get(kind, 0) / target, order, kind)
                 for order, (kind, target) in enumerate(self.pool.targets.items())
                 if counts.get(kind, 0) < target]
        return min(short)[2] if short else None

    def fill_one(self) -> bool:
        """Make one credential if the pool needs one; False when it is full."""
        return self.fill(1) == 1

    def fill(self, limit: int = FILL_BATCH) -> int:
        """Make up to `limit` credentials the pool needs, counting what it holds once.

        Takers may empty the pool meanwhile; the next batch counts again."""
        counts = self.pool.counts()
        made = 0
        while made < limit and not self._stop.is_set():
            kind = self.neediest(counts)
            if kind is None:
                break
            secret, public = make_entry(kind)
            with self.pool.db.statement() as conn:
                repo.add_pooled_credential(
                    conn, kind=kind, secret_enc=self.pool.box.encrypt(secret, _context(kind)),
                    public=public, now=time.time())
            counts[kind] = counts.get(kind, 0) + 1
            made += 1
            self.made += 1
            self.pool.produced()
        return made

    def _heartbeat(self) -> None:
        now = time.time()
        if now - self._beat_at < HEARTBEAT_SECONDS:
            return
        with self.pool.db.write() as conn:
            repo.set_meta(conn, FILLER_SEEN_KEY, repr(now))
        self._beat_at = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._heartbeat()
                if self.fill():
                    continue
            except Exception as exc:  # keep filling through database hiccups
                if not self.pool.db.unavailable(exc):  # an outage is logged once, by the db
                    log.exception("credential pool filler error")
            self._sleep(IDLE_POLL_SECONDS)
