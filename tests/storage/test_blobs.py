"""Blob stores: a directory, and an S3-compatible bucket (a local moto server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cmhost.storage.blobs import BlobNotFound, DirectoryBlobStore, S3BlobStore, open_blob_store
from tests.support import Cmhost, create_server, free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    name = f"cmhost-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name)
    return name


def _roundtrip(store: Any) -> None:
    store.put("backups/a/b.bin", b"\x00data")
    assert store.get("backups/a/b.bin") == b"\x00data"
    assert store.exists("backups/a/b.bin")
    store.put("backups/a/b.bin", b"new")
    assert store.get("backups/a/b.bin") == b"new"
    store.delete("backups/a/b.bin")
    store.delete("backups/a/b.bin")  # idempotent
    assert not store.exists("backups/a/b.bin")
    with pytest.raises(BlobNotFound):
        store.get("backups/a/b.bin")
    for bad in ("../escape", "/abs", "a/../b", ""):
        with pytest.raises(ValueError):
            store.put(bad, b"x")


def test_directory_store(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    _roundtrip(store)
    assert not list((tmp_path / "blobs").rglob("*.tmp"))


def test_s3_store(s3_endpoint: str, bucket: str) -> None:
    store = open_blob_store(f"s3://{bucket}/cm/prefix?endpoint_url={s3_endpoint}", Path("/"))
    assert isinstance(store, S3BlobStore)
    _roundtrip(store)
    store.put("x/y", b"z")
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=bucket)["Contents"]]
    assert keys == ["cm/prefix/x/y"]


def test_backups_and_restore_through_an_s3_bucket(tmp_path: Path, s3_endpoint: str,
                                                  bucket: str) -> None:
    cm = Cmhost(tmp_path, env=S3_ENV,
                extra_args=["--blob-url", f"s3://{bucket}/cmhost?endpoint_url={s3_endpoint}"])
    cm.start()
    try:
        client = cm.client()
        create_server(client, "s3-backed", "Puppet", DisableAutomatedBackup=True)
        cm.advance(120)
        backup = client.create_backup(ServerName="s3-backed")["Backup"]
        cm.advance(5)
        assert client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]["Status"] \
            == "OK"
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert any(backup["BackupId"] in k and k.endswith(".enc") for k in keys)
        assert not list((cm.data_dir / "blobs").rglob("*")) if (cm.data_dir / "blobs").exists() \
            else True
        client.restore_server(ServerName="s3-backed", BackupId=backup["BackupId"])
        cm.advance(5)
        server = client.describe_servers(ServerName="s3-backed")["Servers"][0]
        assert server["Status"] == "HEALTHY" and "StatusReason" not in server
        client.delete_backup(BackupId=backup["BackupId"])
        cm.advance(5)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert not any(backup["BackupId"] in k for k in keys)
    finally:
        cm.stop()
