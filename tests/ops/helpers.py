"""Helpers of the operation tests: healthy servers, waits, keys, CSRs and certificate checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support import Cmhost, create_server

ACCOUNT = "000000000000"
CREATING_SECONDS = 60
DELETING_SECONDS = 10
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def expect_error(call: Callable[..., Any], code: str, **params: Any) -> dict[str, Any]:
    """`call(**params)` must fail with HTTP 400 and error `code`; returns the error."""
    with pytest.raises(ClientError) as info:
        call(**params)
    error: dict[str, Any] = info.value.response["Error"]
    assert error["Code"] == code, error
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error


def now(cmhost: Cmhost) -> dt.datetime:
    """The virtual clock of `cmhost`, UTC."""
    return dt.datetime.fromtimestamp(cmhost.get("/_cmhost/clock")["now"], dt.UTC)


def quiet_windows(cmhost: Cmhost) -> dict[str, Any]:
    """Server settings that keep the scheduler out of a test: no automated backups and a
    maintenance window (weekly, on the hour) half a week away."""
    return {"DisableAutomatedBackup": True,
            "PreferredMaintenanceWindow": weekly(now(cmhost) + dt.timedelta(days=3, hours=12))}


def weekly(moment: dt.datetime) -> str:
    """The weekly window `DDD:HH:00` of the hour `moment` is in."""
    return f"{DAYS[moment.weekday()]}:{moment:%H}:00"


def server(client: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.describe_servers(ServerName=name)["Servers"][0]
    return found


def attribute(attributes: list[dict[str, str]], name: str) -> str | None:
    return next((a.get("Value") for a in attributes if a["Name"] == name), None)


def settle(cmhost: Cmhost, seconds: float = 1.0) -> None:
    """Run every job that is due (now or within `seconds` of virtual time)."""
    cmhost.advance(seconds)


def healthy_server(cmhost: Cmhost, client: Any, name: str, engine: str = "Chef",
                   **kwargs: Any) -> dict[str, Any]:
    """Create a server (scheduler kept away unless overridden) and wait until HEALTHY.

    Returns the CreateServer response's server (with its one-time attributes)."""
    created = create_server(client, name, engine, **{**quiet_windows(cmhost), **kwargs})
    assert created["Status"] == "CREATING"
    cmhost.advance(CREATING_SECONDS + 1)
    assert server(client, name)["Status"] == "HEALTHY", server(client, name)
    return created


def backup_now(cmhost: Cmhost, client: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    """A manual backup of `name`, completed (status OK)."""
    backup: dict[str, Any] = client.create_backup(ServerName=name, **kwargs)["Backup"]
    settle(cmhost)
    done: dict[str, Any] = client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]
    assert done["Status"] == "OK", done
    return done


def delete_server(cmhost: Cmhost, client: Any, name: str) -> None:
    client.delete_server(ServerName=name)
    cmhost.advance(DELETING_SECONDS + 1)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName=name)


def events(client: Any, name: str) -> list[str]:
    return [e["Message"] for e in client.describe_events(ServerName=name)["ServerEvents"]]


# --- nodes -------------------------------------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey | None = None) -> str:
    key = key or rsa_key()
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def csr_pem(common_name: str, key: rsa.RSAPrivateKey | None = None) -> str:
    key = key or rsa_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def chef_attributes(organization: str = "CHEF_ORGANIZATION",
                    key_name: str = "CHEF_NODE_PUBLIC_KEY") -> list[dict[str, str]]:
    return [{"Name": organization, "Value": "default"}, {"Name": key_name, "Value": public_pem()}]


def puppet_attributes(node: str) -> list[dict[str, str]]:
    return [{"Name": "PUPPET_NODE_CSR", "Value": csr_pem(node)}]


def node_status(cmhost: Cmhost, client: Any, name: str, token: str) -> dict[str, Any]:
    """The DescribeNodeAssociationStatus answer once the request has been worked."""
    settle(cmhost)
    answer: dict[str, Any] = client.describe_node_association_status(
        ServerName=name, NodeAssociationStatusToken=token)
    return answer


def associate(cmhost: Cmhost, client: Any, name: str, node: str,
              attributes: list[dict[str, str]]) -> dict[str, Any]:
    token = client.associate_node(ServerName=name, NodeName=node,
                                  EngineAttributes=attributes)["NodeAssociationStatusToken"]
    return node_status(cmhost, client, name, token)


def disassociate(cmhost: Cmhost, client: Any, name: str, node: str,
                 attributes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    token = client.disassociate_node(ServerName=name, NodeName=node,
                                     EngineAttributes=attributes or [])[
        "NodeAssociationStatusToken"]
    return node_status(cmhost, client, name, token)


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def assert_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    """`cert` names `ca` as its issuer and `ca`'s public key verifies its signature."""
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)  # raises InvalidSignature / ValueError otherwise


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def server_id(server_arn: str) -> str:
    return server_arn.rsplit("/", 1)[1]


def crl_of(cmhost: Cmhost, server_arn: str) -> x509.CertificateRevocationList:
    path = cmhost.data_dir / "engines" / server_id(server_arn) / "crl.pem"
    return x509.load_pem_x509_crl(path.read_bytes())


def artifact_path(cmhost: Cmhost, backup_id: str) -> Path:
    """The stored artifact of a backup (not its log) in the blob directory."""
    found = [p for p in (cmhost.data_dir / "blobs").rglob(f"*{backup_id}*")
             if p.is_file() and not p.name.endswith(".log")]
    assert len(found) == 1, found
    return found[0]
