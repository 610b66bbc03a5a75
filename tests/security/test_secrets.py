"""Hostile callers, secrets: nothing secret is ever kept or shown in clear.

One cmhost is driven through everything that makes or takes a secret: `cmhost keys create`,
CreateServer for Chef (generated pivotal key, password and starter kit), Puppet (generated
password, the user's r10k SSH private key) and Chef with a custom domain (the user's TLS
private key), UpdateServerEngineAttributes (a generated pivotal key, a given and a generated
Puppet password), CreateBackup, RestoreServer, StartMaintenance and a node association. Then,
with the server stopped (SQLite's WAL checkpointed):

- no returned secret appears in the database, in any file of the data directory, in the log
  (JSON lines at debug level, searched as written and with every JSON string decoded);
- no file holds a PEM "PRIVATE KEY", and no file holds the DER (raw or base64) of the private
  key behind any certificate cmhost made: the CA keys, server keys and kit keys, found through
  the public key of every certificate on disk or returned;
- each secret appears in the one response that handed it out and in no other response
  (DescribeServers, DescribeBackups, DescribeEvents, ListTagsForResource, user data, backup
  logs, `keys list`...); a password the user gave is never returned at all;
- the master key is in none of those places, its file is 0600 in a 0700 directory, and a
  wrong, malformed or exposed master key stops start-up with a message that names it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import stat
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.integration.helpers import certificate, private_pem, rsa_key
from tests.security.estate import puppet_node_attributes, server_params
from tests.security.hosts import issue_caller, quiet_host, settle, to_hour_start
from tests.security.wire import Caller
from tests.support import ROOT, Cmhost, database_bytes

ACCOUNT = "510000000001"
GIVEN_PUPPET_PASSWORD = "Giv3n-Pupp3t-Passw0rd"
CUSTOM_DOMAIN = "secure.example.com"


@dataclass
class Secret:
    """A secret cmhost handed out (or was given), and where it may appear."""

    label: str
    needles: list[bytes]  # distinctive fragments of it
    issued_in: int | None  # index of the one response allowed to carry it (None: none)
    visible: bool = True  # the issuing response shows it as is (not zipped in a kit)


@dataclass
class Vault:
    host: Cmhost
    caller: Caller
    secrets: list[Secret] = field(default_factory=list)
    responses: list[tuple[str, bytes]] = field(default_factory=list)  # every answer, in order
    certificates: list[str] = field(default_factory=list)  # PEM certificates seen in answers

    def call(self, operation: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.caller.call(operation, params)
        assert reply.status == 200, f"{operation}: {reply}"
        self.responses.append((operation, reply.body))
        answer: dict[str, Any] = reply.json()
        return answer

    def keep(self, label: str, needles: list[bytes], *, issued: bool = True,
             visible: bool = True) -> None:
        needles = [n for n in needles if len(n) >= 12]
        assert needles, label
        self.secrets.append(Secret(label, needles,
                                   len(self.responses) - 1 if issued else None, visible))

    def keep_attributes(self, what: str, attributes: list[dict[str, str]]) -> None:
        """Every secret among the engine attributes of the last response."""
        for attribute in attributes:
            name, value = attribute["Name"], attribute["Value"]
            if "PASSWORD" in name:
                self.keep(f"{what} {name}", [value.encode()])
            elif name.endswith("PIVOTAL_KEY"):
                self.keep(f"{what} {name}", private_key_needles(value.encode()))
            elif name.endswith("STARTER_KIT"):
                kit = zipfile.ZipFile(io.BytesIO(base64.b64decode(value)))
                for info in kit.infolist():
                    data = kit.read(info)
                    if b"PRIVATE KEY" in data:
                        self.keep(f"{what} kit {info.filename}", private_key_needles(data),
                                  visible=False)
                    self.certificates += pem_blocks(data, "CERTIFICATE")
            elif "CERT" in name:
                self.certificates.append(value)


# --- fragments of secrets ------------------------------------------------------------------


def pem_blocks(data: bytes | str, kind: str) -> list[str]:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    out, inside = [], None
    for line in text.splitlines():
        if line.startswith("-----BEGIN ") and line.endswith(f"{kind}-----"):
            inside = [line]
        elif inside is not None:
            inside.append(line)
            if line.startswith("-----END "):
                out.append("\n".join(inside) + "\n")
                inside = None
    return out


def private_key_needles(pem: bytes) -> list[bytes]:
    """Body lines of every PEM private key in `pem`, and raw fragments of its DER."""
    needles = []
    for block in pem_blocks(pem, "PRIVATE KEY"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith("-----")]
        needles += [ln.encode() for ln in lines[1:4]]
        der = base64.b64decode("".join(lines))
        needles.append(der[len(der) // 2: len(der) // 2 + 24])
    return needles


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + der_length(len(raw)) + raw


def private_key_signatures(public_key: Any) -> list[bytes]:
    """Bytes only a DER private key of `public_key` contains (a certificate never does):
    RSA `version 0, modulus` at the start of RSAPrivateKey; EC the `[1] publicKey` field."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return [(b"\x02\x01\x00" + der_integer(public_key.public_numbers().n))[:40]]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
        bits = b"\x03" + der_length(len(point) + 1) + b"\x00" + point
        return [(b"\xa1" + der_length(len(bits)) + bits)[:40]]
    return []


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")


class Haystack:
    """Bytes to search for secrets: as they are, and every base64 run in them decoded (at
    each of the four character alignments, line breaks and JSON's escaped ones removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        flat = data.replace(b"\\n", b"").replace(b"\n", b"").replace(b"\r", b"")
        views = []
        for run in _BASE64_RUN.finditer(flat):
            text = run.group().rstrip(b"=")
            for offset in range(4):
                chunk = text[offset:]
                chunk = chunk[: len(chunk) // 4 * 4]
                if chunk:
                    views.append(base64.b64decode(chunk))
        self.decoded = b"\0".join(views)

    def holds(self, needle: bytes) -> bool:
        return needle in self.data or needle in self.decoded


# --- driving cmhost ------------------------------------------------------------------------


def ssh_private_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    # The most the log ever says: every access line and every debug line, as JSON.
    host = quiet_host(Path(tmp_path_factory.mktemp("secrets")), extra_args=[
        "--log-format", "json", "--log-level", "debug"]).start()
    caller = issue_caller(host, ACCOUNT)
    v = Vault(host, caller)
    try:
        _drive(v)
        yield v
    finally:
        host.stop()


def _drive(v: Vault) -> None:
    host, c = v.host, v.caller
    # An issued access key.
    v.keep("issued SecretAccessKey", [c.key.secret.encode()], issued=False)

    # Chef: pivotal key, password and starter kit all generated.
    chef = v.call("CreateServer", server_params(host, c, "sec-chef", EngineAttributes=[]))
    v.keep_attributes("CreateServer Chef", chef["Server"]["EngineAttributes"])
    # Puppet: a generated password, the user's r10k SSH key.
    r10k = ssh_private_key()
    puppet = v.call("CreateServer", server_params(
        host, c, "sec-puppet", "Puppet", EngineAttributes=[
            {"Name": "PUPPET_R10K_REMOTE", "Value": "ssh://git@example.com/control.git"},
            {"Name": "PUPPET_R10K_PRIVATE_KEY", "Value": r10k}]))
    v.keep_attributes("CreateServer Puppet", puppet["Server"]["EngineAttributes"])
    v.keep("user's r10k private key", private_key_needles(r10k.encode()), issued=False)
    # Chef with a custom domain: the user's TLS key.
    domain_key = rsa_key()
    domain_pem = private_pem(domain_key)
    v.certificates.append(certificate(domain_key, CUSTOM_DOMAIN))
    custom = v.call("CreateServer", server_params(
        host, c, "sec-custom", CustomDomain=CUSTOM_DOMAIN, CustomCertificate=v.certificates[-1],
        CustomPrivateKey=domain_pem))
    v.keep_attributes("CreateServer custom domain", custom["Server"]["EngineAttributes"])
    v.keep("user's custom domain private key", private_key_needles(domain_pem.encode()),
           issued=False)
    to_hour_start(host, 3600)

    # New credentials: a generated pivotal key; a given, then a generated Puppet password.
    update = v.call("UpdateServerEngineAttributes",
                    {"ServerName": "sec-chef", "AttributeName": "CHEF_PIVOTAL_KEY"})
    v.keep_attributes("UpdateServerEngineAttributes Chef",
                      update["Server"].get("EngineAttributes", []))
    settle(host)
    v.call("UpdateServerEngineAttributes", {
        "ServerName": "sec-puppet", "AttributeName": "PUPPET_ADMIN_PASSWORD",
        "AttributeValue": GIVEN_PUPPET_PASSWORD})
    v.keep("given Puppet password", [GIVEN_PUPPET_PASSWORD.encode()], issued=False)
    settle(host)
    update = v.call("UpdateServerEngineAttributes", {
        "ServerName": "sec-puppet", "AttributeName": "PUPPET_ADMIN_PASSWORD"})
    v.keep_attributes("UpdateServerEngineAttributes Puppet",
                      update["Server"].get("EngineAttributes", []))
    settle(host)

    # Backups, a restore, maintenance, a node: everything that moves engine state around.
    for name in ("sec-chef", "sec-puppet"):
        v.call("CreateBackup", {"ServerName": name, "Description": "secrets"})
        settle(host)
    backups = v.call("DescribeBackups")["Backups"]
    assert {b["Status"] for b in backups} == {"OK"}, backups
    puppet_backup = next(b["BackupId"] for b in backups if b["ServerName"] == "sec-puppet")
    v.call("RestoreServer", {"ServerName": "sec-puppet", "BackupId": puppet_backup})
    settle(host)
    v.call("StartMaintenance", {"ServerName": "sec-chef"})
    settle(host)
    token = v.call("AssociateNode", {
        "ServerName": "sec-puppet", "NodeName": "sec-node-1",
        "EngineAttributes": puppet_node_attributes("sec-node-1")})["NodeAssociationStatusToken"]
    settle(host)

    # Everything a caller can read back.
    servers = v.call("DescribeServers")["Servers"]
    assert {s["Status"] for s in servers} == {"HEALTHY"}, servers
    for server in servers:
        for attribute in server.get("EngineAttributes", []):
            if "CERT" in attribute["Name"]:
                v.certificates.append(attribute["Value"])
        v.call("DescribeEvents", {"ServerName": server["ServerName"]})
        v.call("ListTagsForResource", {"ResourceArn": server["ServerArn"]})
        exported = v.call("ExportServerEngineAttribute", {
            "ServerName": server["ServerName"], "ExportAttributeName": "Userdata"})
        v.responses.append(("Userdata (decoded)",
                            base64.b64decode(exported["EngineAttribute"]["Value"])))
        v.call("UpdateServer", {"ServerName": server["ServerName"], "BackupRetentionCount": 2})
    for backup in v.call("DescribeBackups")["Backups"]:
        v.call("ListTagsForResource", {"ResourceArn": backup["BackupArn"]})
        with urllib.request.urlopen(backup["S3LogUrl"], timeout=10) as log:
            v.responses.append((f"log of {backup['BackupId']}", log.read()))
    node = v.call("DescribeNodeAssociationStatus",
                  {"ServerName": "sec-puppet", "NodeAssociationStatusToken": token})
    assert node["NodeAssociationStatus"] == "SUCCESS", node
    v.call("DescribeAccountAttributes")
    listed = host.cli("keys", "list", *host.storage_args()).stdout.encode()
    v.responses.append(("keys list", listed))
    host.stop()  # checkpoint SQLite's WAL into the database file


def _stored(v: Vault) -> list[tuple[str, bytes]]:
    """(where, bytes) of everything cmhost keeps: the database, every file of the data
    directory (blobs included), the log."""
    log = v.host.log_path.read_bytes()
    places = [("database", database_bytes(v.host.database_url)), ("log", log),
              ("log, JSON decoded", _decoded_json_lines(log))]
    places += [(str(p.relative_to(v.host.data_dir)), p.read_bytes())
               for p in sorted(v.host.data_dir.rglob("*")) if p.is_file()]
    return places


def _decoded_json_lines(log: bytes) -> bytes:
    """Every value of every JSON line of the log, unescaped (a secret with a quote, a
    backslash or a line break would not match as JSON writes it)."""
    out = []
    for line in log.splitlines():
        if line.startswith(b"{"):
            out += [str(value).encode() for value in json.loads(line).values()]
    return b"\n".join(out)


def test_the_log_is_json_with_an_access_line_per_request(vault: Vault) -> None:
    records = [json.loads(line) for line in vault.host.log_path.read_bytes().splitlines()
               if line.startswith(b"{")]
    access = [r for r in records if r["logger"] == "cmhost.access"]
    assert len(access) >= vault.caller.sent[0] > 25
    assert {r["account"] for r in access} == {ACCOUNT}
    assert any(r["logger"] == "cmhost.jobs" for r in records)


def test_no_secret_is_stored_in_clear(vault: Vault) -> None:
    assert len(vault.secrets) >= 10, [s.label for s in vault.secrets]
    leaks = []
    for where, data in _stored(vault):
        haystack = Haystack(data)
        for secret in vault.secrets:
            if any(haystack.holds(n) for n in secret.needles):
                leaks.append(f"{secret.label} in {where}")
    assert not leaks, "\n".join(leaks)


def test_no_private_key_is_stored(vault: Vault) -> None:
    """No PEM private key anywhere; and no DER private key (raw or base64) of any key whose
    certificate cmhost made or returned: CA keys, server keys, starter kit keys."""
    certificates = list(vault.certificates)
    stored = _stored(vault)
    for _, data in stored:
        certificates += pem_blocks(data.replace(b"\\n", b"\n"), "CERTIFICATE")
    keys = {}
    for pem in certificates:
        cert = x509.load_pem_x509_certificate(pem.encode())
        keys[cert.subject.rfc4514_string() + str(cert.serial_number)] = cert.public_key()
    signatures = [s for key in keys.values() for s in private_key_signatures(key)]
    assert len(signatures) >= 6, f"only {len(signatures)} certificates found"
    leaks = []
    for where, data in stored:
        if b"PRIVATE KEY" in data:
            leaks.append(f"a PEM private key in {where}")
        haystack = Haystack(data)
        leaks += [f"the DER private key of a certified key in {where}"
                  for s in signatures if haystack.holds(s)]
    assert not leaks, "\n".join(sorted(set(leaks)))


def test_backup_artifacts_are_sealed(vault: Vault) -> None:
    # The audit trail's delivery files (AWSLogs/...) are for people to read, as CloudTrail's
    # are, and hold no secret (tests/access/test_audit.py searches them): not sealed.
    blobs = vault.host.data_dir / "blobs"
    artifacts = [p for p in blobs.rglob("*")
                 if p.is_file() and not p.name.endswith(".log")
                 and p.relative_to(blobs).parts[0] != "AWSLogs"]
    assert len(artifacts) >= 3, artifacts  # two manual backups and the maintenance one
    for path in artifacts:
        data = path.read_bytes()
        assert data.startswith(b"CMHB1"), f"{path} is not sealed with the master key"
        assert b"\x1f\x8b\x08" not in data[:64] and b"ustar" not in data, path


def test_each_secret_only_in_the_response_that_issued_it(vault: Vault) -> None:
    leaks = []
    for index, (operation, body) in enumerate(vault.responses):
        haystack = Haystack(body)
        for secret in vault.secrets:
            if index == secret.issued_in:
                assert not secret.visible or any(haystack.holds(n) for n in secret.needles), \
                    f"{secret.label} is not in the answer that issued it"
                continue
            if any(haystack.holds(n) for n in secret.needles):
                leaks.append(f"{secret.label} in the answer of {operation} (#{index})")
    assert not leaks, "\n".join(leaks)
    assert len(vault.responses) > 25


def test_master_key_is_nowhere_else_and_private(vault: Vault) -> None:
    key_file = vault.host.master_key_file
    encoded = key_file.read_text().strip().encode()
    raw = base64.b64decode(encoded)
    for where, data in _stored(vault):
        assert encoded not in data and raw not in data, f"the master key is in {where}"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not key_file.is_relative_to(vault.host.data_dir)


# --- the master key at start-up ------------------------------------------------------------


def _serve(host: Cmhost, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cmhost serve` with `host`'s settings, which must give up (not serve) within 60 s."""
    return subprocess.run([sys.executable, "-m", "cmhost", "serve", *host.args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                          env={**host.env, **(env or {})})


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Cmhost:
    """A cmhost that has run once (its database knows its master key), now stopped."""
    host = quiet_host(Path(tmp_path_factory.mktemp("masterkey"))).start()
    Caller(host).ok("DescribeServers")
    host.stop()
    return host


@pytest.fixture()
def original_key(stopped: Cmhost) -> Iterator[str]:
    key_file = stopped.master_key_file
    original = key_file.read_text()
    yield original
    key_file.write_text(original)
    key_file.chmod(0o600)


def test_wrong_master_key_stops_start_up(stopped: Cmhost, original_key: str) -> None:
    stopped.master_key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    done = _serve(stopped)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "master key" in output and str(stopped.master_key_file) in output, output[-2000:]
    assert "not the key this database was created with" in output, output[-2000:]


def test_wrong_master_key_in_the_environment_stops_start_up(stopped: Cmhost,
                                                            original_key: str) -> None:
    """CMHOST_MASTER_KEY (the key itself) wins over the file: the message must say that the
    key in CMHOST_MASTER_KEY is wrong, not blame the (correct) file."""
    done = _serve(stopped, {"CMHOST_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "not the key this database was created with" in output, output[-2000:]
    assert re.search(r"CMHOST_MASTER_KEY(?!_FILE)", output), (
        "the message does not say the wrong key came from CMHOST_MASTER_KEY: "
        + output.strip().splitlines()[-1])


@pytest.mark.parametrize("content", ["not base64 at all!", base64.b64encode(b"short").decode()])
def test_malformed_master_key_stops_start_up(stopped: Cmhost, original_key: str,
                                             content: str) -> None:
    stopped.master_key_file.write_text(content)
    done = _serve(stopped)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "master key" in output and str(stopped.master_key_file) in output, output[-2000:]


def test_exposed_master_key_file_stops_start_up(stopped: Cmhost, original_key: str) -> None:
    stopped.master_key_file.chmod(0o644)
    done = _serve(stopped)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "chmod 600" in output and str(stopped.master_key_file) in output, output[-2000:]


def test_wrong_master_key_stops_the_key_command(stopped: Cmhost, original_key: str) -> None:
    stopped.master_key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    done = stopped.cli("keys", "create", "--account", "510000000002", *stopped.storage_args(),
                       check=False)
    assert done.returncode != 0 and "master key" in done.stderr, done.stderr[-2000:]
    assert "SecretAccessKey" not in done.stdout

