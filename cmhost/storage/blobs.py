"""Where backup artifacts and logs live: a directory by default, or an S3-compatible bucket."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from cmhost import tempfiles

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class BlobNotFound(Exception):
    """No blob is stored under that key."""


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class DirectoryBlobStore:
    """Blobs as files under one directory; a write is atomic (temp file, fsync, rename).
    The temporary files of writers that died are removed by `service.housekeeping`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfiles.create_beside(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def open_blob_store(url: str | None, data_dir: Path) -> BlobStore:
    """The blob store named by `url`.

    None or `file://PATH`: a directory. `s3://BUCKET[/PREFIX][?endpoint_url=URL&region=R]`:
    an S3-compatible bucket; credentials come from the usual AWS variables and files.
    """
    if url is None:
        return DirectoryBlobStore(data_dir / "blobs")
    if url.startswith("file://"):
        return DirectoryBlobStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if not parts.netloc:
            raise ValueError(f"blob store URL {url!r} names no bucket")
        return S3BlobStore(parts.netloc, parts.path, endpoint_url=query.get("endpoint_url"),
                           region=query.get("region"))
    raise ValueError(f"unsupported blob store URL {url!r} (use file://PATH or s3://BUCKET)")


class S3BlobStore:
    """Blobs as objects in an S3-compatible bucket (through boto3), under a key prefix."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None,
                 region: str | None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"},
                          s3={"addressing_style": "path"}))

    def _key(self, key: str) -> str:
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        # A PUT is atomic in S3: readers see the old object or the new one, never a part.
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from None
            raise
        return bytes(response["Body"].read())

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except BlobNotFound:
            return False
        return True
