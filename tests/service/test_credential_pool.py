"""The credential pool: workers make keys and passwords ahead, CreateServer takes each once."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import pki
from cmhost.engines.base import ServerSpec
from cmhost.engines.embedded_identity import prepare_identity, update_credential
from cmhost.service import credential_pool as cp
from cmhost.service.credential_pool import CredentialPool, PoolFiller
from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox
from tests.support import database_bytes, fresh_database_url


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    (tmp_path / "data").mkdir()
    database = Database(fresh_database_url(tmp_path))
    database.upgrade()
    return database


@pytest.fixture()
def box() -> SecretBox:
    return SecretBox(b"k" * 32)


def spec(family: str = "Chef") -> ServerSpec:
    return ServerSpec(server_id="11111111-2222-3333-4444-555555555555", name="pooled",
                      account="111122223333", region="us-east-1",
                      engine="ChefAutomate" if family == "Chef" else "Puppet",
                      family=family, engine_version="2" if family == "Chef" else "2019",
                      endpoint="pooled.example.test")


def fill(pool: CredentialPool) -> PoolFiller:
    filler = PoolFiller(pool)
    while filler.fill_one():
        pass
    return filler


def test_the_filler_fills_each_kind_to_its_target_and_stops(db: Database, box: SecretBox
                                                             ) -> None:
    pool = CredentialPool(db, box, servers=2)
    filler = fill(pool)
    assert pool.counts() == {"rsa-2048": 6, "password-chef": 2, "password-puppet": 2}
    assert filler.made == 10
    assert not filler.fill_one()


def test_the_neediest_kind_is_made_first(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=2)
    filler = PoolFiller(pool)
    made = []
    for _ in range(5):
        made.append(filler.neediest())
        filler.fill_one()
    # Every kind gets its first entry before any gets a second.
    assert set(made[:3]) == {"rsa-2048", "password-chef", "password-puppet"}


def test_entries_are_sealed_and_each_is_handed_out_once(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=1)
    fill(pool)
    with db.read() as conn:
        stored = conn.execute(repo.credential_pool.select()).mappings().all()
    plain = [box.decrypt(r["secret_enc"], f"credential-pool:{r['kind']}") for r in stored]
    raw = database_bytes(db.url)
    for secret in plain:
        for line in secret.splitlines()[1:2] or [secret]:
            assert line.encode() not in raw
    keys = [pool.rsa_key() for _ in range(3)]
    assert all(k is not None for k in keys)
    numbers = {k.private_numbers().p for k in keys if k is not None}
    assert len(numbers) == 3
    password, hashed = pool.password("chef") or ("", "")
    assert password in plain and pki.verify_password(password, hashed)
    assert pool.password("puppet") is not None
    assert pool.counts() == {}


def test_a_dry_pool_without_a_filler_makes_nothing_wait(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=1)
    started = time.monotonic()
    assert pool.rsa_key() is None
    assert pool.password("puppet") is None
    assert time.monotonic() - started < 1.0
    assert pool.made_here == 2


def test_a_dry_pool_waits_for_a_live_filler_in_another_process(db: Database, box: SecretBox
                                                               ) -> None:
    api = CredentialPool(db, box, servers=1)
    # The "worker": its own pool object over the same database, as another process has.
    worker_pool = CredentialPool(db, box, servers=1)
    filler = PoolFiller(worker_pool)
    filler._heartbeat()
    timer = threading.Timer(0.3, filler.fill_one)
    timer.start()
    started = time.monotonic()
    key = api.rsa_key()
    timer.join()
    assert key is not None
    assert 0.25 < time.monotonic() - started < 5.0
    assert api.made_here == 0


def test_a_filler_that_makes_nothing_is_waited_for_at_most_max_wait(
        db: Database, box: SecretBox, caplog: pytest.LogCaptureFixture) -> None:
    api = CredentialPool(db, box, servers=1, max_wait=0.3)
    PoolFiller(CredentialPool(db, box, servers=1))._heartbeat()
    started = time.monotonic()
    assert api.rsa_key() is None
    assert 0.3 <= time.monotonic() - started < 3.0
    assert "making it in the request" in caplog.text


def test_a_stale_heartbeat_is_no_filler(db: Database, box: SecretBox) -> None:
    with db.write() as conn:
        repo.set_meta(conn, cp.FILLER_SEEN_KEY, repr(time.time() - cp.FILLER_STALE_SECONDS - 1))
    started = time.monotonic()
    assert CredentialPool(db, box, servers=1).rsa_key() is None
    assert time.monotonic() - started < 1.0


def test_concurrent_takers_never_share_an_entry(db: Database, box: SecretBox) -> None:
    pools = [CredentialPool(db, box, servers=4) for _ in range(4)]  # as four API processes
    fill(pools[0])

    def take(i: int) -> int | None:
        with pki.supplied_by(pools[i % 4]):  # one key each: the spares go back at the end
            key = pki.generate_rsa_key()
        return key.private_numbers().p

    with ThreadPoolExecutor(8) as ex:
        taken = list(ex.map(take, range(12)))
    assert len(set(taken)) == 12
    # With no filler alive a taker that finds the pool empty (its keys in others' hands for a
    # moment) makes its key itself; every key that left the pool was used exactly once.
    assert pools[0].counts().get("rsa-2048", 0) == sum(p.made_here for p in pools)


def test_keys_a_request_took_and_did_not_use_go_back(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=1)
    fill(pool)
    given = pki.public_key_pem(pki.make_rsa_key())
    with pki.supplied_by(pool):
        prepared = prepare_identity(spec("Chef"), {"CHEF_PIVOTAL_KEY": given})
    # The CA and the server certificate used two of the three keys taken at once.
    assert prepared.material.public["pivotal_public_key"] == given
    assert pool.counts() == {"rsa-2048": 1, "password-puppet": 1}
    assert pool.made_here == 0


def test_a_block_takes_only_the_keys_it_still_needs(db: Database, box: SecretBox) -> None:
    """A dry pool hands out fewer keys than a server needs; the block's next take asks for
    what is still missing, so nothing is taken only to be given back."""
    pool = CredentialPool(db, box, servers=2)

    def put_keys(n: int) -> None:
        with db.write() as conn:
            for _ in range(n):
                pem = pki.private_key_pem(pki.make_rsa_key())
                repo.add_pooled_credential(conn, kind=cp.RSA_2048, public=None, now=0.0,
                                           secret_enc=box.encrypt(pem, cp._context(cp.RSA_2048)))

    put_keys(1)
    taken: list[int] = []
    take = pool._take

    def counting_take(kind: str, limit: int) -> list[tuple[str, str | None]]:
        got = take(kind, limit)
        if kind == cp.RSA_2048:
            taken.append(limit)
            if len(taken) == 1:
                put_keys(4)  # meanwhile a worker makes more
        return got

    pool._take = counting_take  # type: ignore[method-assign]
    with pki.supplied_by(pool):
        prepare_identity(spec("Puppet"), {})
    assert taken == [3, 2]  # one key came first; two were still needed, and two were taken
    assert pool.counts().get(cp.RSA_2048, 0) == 2  # 1 + 4 - 3; none came back


def test_a_server_identity_takes_its_keys_and_password_from_the_supply(
        db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=1)
    fill(pool)
    with pki.supplied_by(pool):
        chef = prepare_identity(spec("Chef"), {})
    assert pool.counts() == {"password-puppet": 1}
    one_time = dict(chef.one_time_attributes)
    private = serialization.load_pem_private_key(
        one_time["CHEF_AUTOMATE_PIVOTAL_KEY"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert pki.public_key_pem(private) == chef.material.public["pivotal_public_key"]
    assert pki.verify_password(one_time["CHEF_AUTOMATE_ADMIN_PASSWORD"],
                               chef.material.public["admin_password_hash"])
    kit = base64.b64decode(one_time["CHEF_STARTER_KIT"])
    assert kit[:2] == b"PK"
    assert pki.verify_chain(chef.material.public["server_cert"], chef.material.public["ca_cert"])

    # The Puppet password comes from the pool; its keys are made here (the pool has none left).
    with pki.supplied_by(pool):
        puppet = prepare_identity(spec("Puppet"), {})
    assert pool.counts() == {}
    assert pool.made_here == 3
    assert pki.verify_password(dict(puppet.one_time_attributes)["PUPPET_ADMIN_PASSWORD"],
                               puppet.material.public["admin_password_hash"])


def test_a_given_password_is_hashed_and_nothing_is_taken(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=1)
    fill(pool)
    with pki.supplied_by(pool):
        prepared = prepare_identity(spec("Puppet"), {"PUPPET_ADMIN_PASSWORD": "GivenPass1234"})
        assert pki.verify_password("GivenPass1234", prepared.material.public[
            "admin_password_hash"])
        again = update_credential(spec("Puppet"), prepared.material, "PUPPET_ADMIN_PASSWORD",
                                  None)
    assert pool.counts() == {"password-chef": 1}
    password = dict(again.one_time_attributes)["PUPPET_ADMIN_PASSWORD"]
    assert pki.verify_password(password, again.material.public["admin_password_hash"])


def test_pool_off_takes_nothing(db: Database, box: SecretBox) -> None:
    pool = CredentialPool(db, box, servers=0)
    assert not pool.enabled
    filler = PoolFiller(pool)
    filler.start()
    assert not filler.running
    assert pool.rsa_key() is None and pool.made_here == 0


def test_a_process_with_its_own_filler_does_not_wait_for_it(
        db: Database, box: SecretBox, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_entry(kind: str) -> tuple[str, str | None]:
        time.sleep(1.5)
        return pki.private_key_pem(pki.make_rsa_key()), None

    monkeypatch.setattr(cp, "make_entry", slow_entry)
    pool = CredentialPool(db, box, servers=1)
    filler = PoolFiller(pool)
    filler.start()
    try:
        started = time.monotonic()
        assert pool.rsa_key() is None  # made in the request, on a core the filler is not using
        assert time.monotonic() - started < 1.0
        assert pool.made_here == 1
    finally:
        filler.stop()
