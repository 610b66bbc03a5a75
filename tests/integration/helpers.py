"""Helpers for the boto3 integration tests: clients, expected errors, keys and certificates."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support import Cmhost, create_server

DEV_ACCOUNT = "000000000000"
OTHER_ACCOUNT = "111111111111"
FAILED = "failed to satisfy constraint: Member must"
SERVER_NAME_PATTERN = r"[a-zA-Z][a-zA-Z0-9\-]*"
WINDOW_PATTERN = r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun):)?([0-1][0-9]|2[0-3]):[0-5][0-9]$"
ARN_PATTERN = "arn:aws.*:opsworks-cm:.*:[0-9]{12}:.*"
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
CREATING_SECONDS = 60
DELETING_SECONDS = 10

# Real region names; each test that needs an empty account view takes one of its own.
REGIONS = (
    "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-west-3",
    "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-east-1", "ca-central-1",
    "ca-west-1", "sa-east-1", "me-south-1", "me-central-1", "af-south-1", "il-central-1",
    "mx-central-1",
)


def one_violation(message: str) -> str:
    return f"1 validation error detected: {message}"


def violation(value: object, path: str, rule: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{path}' {FAILED} {rule}"


def expect_error(call: Callable[..., Any], code: str, message: str | None = None,
                 **params: Any) -> ClientError:
    """Call `call(**params)`; it must fail with `code` (and exactly `message`, if given)."""
    with pytest.raises(ClientError) as info:
        call(**params)
    error = info.value.response["Error"]
    assert error["Code"] == code, error
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, error
    if message is not None:
        assert error["Message"] == message
    return info.value


def unchecked_client(cmhost: Cmhost, region: str = "us-east-1") -> Any:
    """A boto3 client that sends whatever it is given: botocore's own validation is off."""
    return boto3.client(
        "opsworkscm", endpoint_url=cmhost.url, region_name=region, aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))


def issue_key(cmhost: Cmhost, account: str) -> dict[str, str]:
    out = cmhost.cli("keys", "create", "--account", account, *cmhost.storage_args())
    key: dict[str, str] = json.loads(out.stdout)
    assert key["Account"] == account
    return key


def client_for(cmhost: Cmhost, key: dict[str, str], region: str = "us-east-1") -> Any:
    return cmhost.client(region=region, key=key["AccessKeyId"], secret=key["SecretAccessKey"])


@functools.cache
def user_pivotal_key() -> rsa.RSAPrivateKey:
    """The pivotal key pair a user brings (only its public half is sent)."""
    return rsa_key()


# Eight characters, the shortest Chef password allowed: lower, upper, digit and special.
USER_CHEF_PASSWORD = "Ch3f_adm"


def quick_server(client: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    """A Chef server with the user's own pivotal key and password: nothing for the service to
    generate but its CA, so this is the cheapest server to create."""
    attributes = [{"Name": "CHEF_PIVOTAL_KEY", "Value": public_pem(user_pivotal_key())},
                  {"Name": "CHEF_DELIVERY_ADMIN_PASSWORD", "Value": USER_CHEF_PASSWORD}]
    server: dict[str, Any] = create_server(client, name, "Chef", EngineAttributes=attributes,
                                           **kwargs)
    return server


def create_many(client: Any, names: Iterable[str], **kwargs: Any) -> list[dict[str, Any]]:
    """Create several servers concurrently, as a user's script might; returns them in order."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda n: quick_server(client, n, **kwargs), names))


def status_of(client: Any, name: str) -> str:
    status: str = client.describe_servers(ServerName=name)["Servers"][0]["Status"]
    return status


def clock_now(cmhost: Cmhost) -> float:
    now: float = cmhost.get("/_cmhost/clock")["now"]
    return now


def make_healthy(cmhost: Cmhost) -> None:
    """Fast-forward past the provisioning time: every CREATING server settles."""
    cmhost.advance(CREATING_SECONDS + 1)


def finish_deletions(cmhost: Cmhost) -> None:
    cmhost.advance(DELETING_SECONDS + 1)


def attrs(server: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in server.get("EngineAttributes", [])}


def events_of(client: Any, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.describe_events(ServerName=name)["ServerEvents"]
    return found


def all_tags(client: Any, arn: str) -> dict[str, str]:
    pages = client.get_paginator("list_tags_for_resource").paginate(ResourceArn=arn)
    return {t["Key"]: t["Value"] for page in pages for t in page["Tags"]}


UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def server_arn_re(region: str, account: str, name: str) -> re.Pattern[str]:
    return re.compile(rf"arn:aws:opsworks-cm:{region}:{account}:server/{re.escape(name)}/{UUID}")


# --- keys and certificates ------------------------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private_pem(key: Any, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption).decode()


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(key: Any, domain: str, *, issuer_key: Any = None,
                issuer_name: str | None = None, ca: bool = False,
                not_before: dt.datetime | None = None,
                not_after: dt.datetime | None = None) -> str:
    """A PEM certificate for `domain` (CN and SAN), self-signed unless an issuer is given."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or domain)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()
