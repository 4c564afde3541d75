"""Registry storage in an S3 bucket (MinIO in the cluster) through the minio SDK.

S3 has no rename, so a version is built up in place, in this order:

1. ``v<N>/_CLAIM`` is created with ``If-None-Match: *``. A 412 means another writer holds
   that number, and the writer tries N+1. Two registrations can never share a number, and
   a claimed number stays taken even if its writer dies.
2. The version's files and ``metadata.json`` are uploaded.
3. ``_COMPLETE`` — the manifest with every file's sha256 and size — is written last.
   Readers only see versions with a manifest.

``aliases.json`` is replaced with ``If-Match: <ETag it was read with>`` (or created with
``If-None-Match: *``): a compare-and-swap, so a concurrent alias move is never lost.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollgate.errors import RegistryError
from tollgate.registry.base import (
    CLAIM_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    Store,
    dumps,
    make_manifest,
    sha256_file,
    utc_now,
)
from tollgate.s3 import client_from_env, parse_s3_uri, put_conditional

_VERSION_KEY = re.compile(r"v(\d+)/$")
_MISSING = ("NoSuchKey", "NoSuchObject", "NotFound")
# Claims are retried on 412 only; this bounds a pathological run of collisions.
MAX_CLAIM_ATTEMPTS = 1000


class S3Store(Store):
    """Versions and aliases under ``s3://bucket[/prefix]``."""

    def __init__(self, uri: str, client=None):
        location = parse_s3_uri(uri)
        self.bucket = location.bucket
        self.prefix = location.key.strip("/")
        self.root_uri = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.client = client or client_from_env()
        self._checked_bucket = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _ensure_bucket(self) -> None:
        if self._checked_bucket:
            return
        from minio.error import S3Error

        try:
            exists = self.client.bucket_exists(self.bucket)
        except S3Error as exc:
            raise RegistryError(f"cannot reach bucket {self.bucket!r}: {exc.code}: {exc.message}") from exc
        except Exception as exc:  # connection errors come from urllib3 with long messages
            raise RegistryError(f"cannot reach the S3 endpoint for {self.root_uri}: {exc}") from exc
        if not exists:
            raise RegistryError(f"bucket {self.bucket!r} does not exist; create it (the kind setup creates 'models')")
        self._checked_bucket = True

    def version_numbers(self, model: str, include_incomplete: bool = False) -> list[int]:
        self._ensure_bucket()
        numbers = []
        for obj in self.client.list_objects(self.bucket, prefix=self._key(f"{model}/"), recursive=False):
            match = _VERSION_KEY.search(obj.object_name)
            if not (obj.is_dir and match):
                continue
            number = int(match.group(1))
            if include_incomplete or self._exists(f"{model}/v{number}/{MANIFEST_FILE}"):
                numbers.append(number)
        return sorted(numbers)

    def is_complete(self, model: str, version: int) -> bool:
        self._ensure_bucket()
        return self._exists(f"{model}/v{version}/{MANIFEST_FILE}")

    def _exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise

    def _put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        import io

        self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data), content_type=content_type)

    def _claim(self, model: str) -> int:
        version = max(self.version_numbers(model, include_incomplete=True), default=0) + 1
        for _ in range(MAX_CLAIM_ATTEMPTS):
            claim = dumps({"claimed_at": utc_now()}).encode()
            if put_conditional(self.client, self.bucket, self._key(f"{model}/v{version}/{CLAIM_FILE}"), claim,
                               if_none_match=True, content_type="application/json") is not None:
                return version
            version += 1  # another writer holds this number
        raise RegistryError(f"could not claim a version number for {model} in {self.root_uri} "
                            f"after {MAX_CLAIM_ATTEMPTS} attempts")

    def publish(self, model: str, source_dir: Path, metadata: dict[str, Any]) -> int:
        self._ensure_bucket()
        version = self._claim(model)
        base = f"{model}/v{version}"
        files = sorted(p for p in source_dir.rglob("*") if p.is_file()
                       and p.relative_to(source_dir).as_posix() not in (METADATA_FILE, MANIFEST_FILE, CLAIM_FILE))
        entries = []
        for path in files:
            relative = path.relative_to(source_dir).as_posix()
            sha, size = sha256_file(path)
            self.client.fput_object(self.bucket, self._key(f"{base}/{relative}"), str(path))
            entries.append({"path": relative, "bytes": size, "sha256": sha})
        record = dumps({**metadata, "version": version, "created_at": utc_now()}).encode()
        self._put(f"{base}/{METADATA_FILE}", record, "application/json")
        entries.append({"path": METADATA_FILE, "bytes": len(record), "sha256": hashlib.sha256(record).hexdigest()})
        # Written last, and only once: nobody else can complete a number this writer claimed.
        if put_conditional(self.client, self.bucket, self._key(f"{base}/{MANIFEST_FILE}"),
                           dumps(make_manifest(version, entries)).encode(),
                           if_none_match=True, content_type="application/json") is None:
            raise RegistryError(f"{self.root_uri}/{base} was completed by another writer; nothing published")
        return version

    def read_bytes(self, key: str) -> bytes | None:
        data, _ = self.read_with_token(key)
        return data

    def read_with_token(self, key: str) -> tuple[bytes | None, str | None]:
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            response = self.client.get_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                return None, None
            raise
        try:
            return response.read(), (response.headers.get("ETag") or "").strip('"')
        finally:
            response.close()
            response.release_conn()

    def write_if(self, key: str, data: bytes, token: str | None) -> bool:
        self._ensure_bucket()
        return put_conditional(self.client, self.bucket, self._key(key), data, if_match=token,
                               if_none_match=token is None, content_type="application/json") is not None

    def fetch_file(self, key: str, dest: Path) -> bool:
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            self.client.fget_object(self.bucket, self._key(key), str(dest))
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def version_files(self, model: str, version: int) -> list[str]:
        self._ensure_bucket()
        prefix = self._key(f"{model}/v{version}/")
        return sorted(obj.object_name[len(prefix):]
                      for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True))

    def version_uri(self, model: str, version: int) -> str:
        return f"{self.root_uri}/{model}/v{version}"

    def model_dirs(self) -> list[str]:
        """Every model prefix, including ones that hold only incomplete versions."""
        self._ensure_bucket()
        return sorted(obj.object_name.rstrip("/").rsplit("/", 1)[-1]
                      for obj in self.client.list_objects(self.bucket, prefix=self._key("") or None, recursive=False)
                      if obj.is_dir)

    def models(self) -> list[str]:
        return [name for name in self.model_dirs() if self.version_numbers(name)]

    def litter(self, model: str) -> list[tuple[str, float]]:
        """Incomplete versions that still hold files besides their claim (age: newest object)."""
        found = []
        now = datetime.now(UTC)
        for number in self.version_numbers(model, include_incomplete=True):
            if self.is_complete(model, number):
                continue
            prefix = self._key(f"{model}/v{number}/")
            objects = list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True))
            if all(obj.object_name[len(prefix):] == CLAIM_FILE for obj in objects):
                continue  # already collected: only the claim is kept, so the number is never reused
            newest = max((obj.last_modified for obj in objects if obj.last_modified), default=now)
            found.append((f"v{number}", (now - newest).total_seconds()))
        return found

    def remove_litter(self, model: str, label: str) -> None:
        from minio.deleteobjects import DeleteObject

        match = re.fullmatch(r"v(\d+)", label)
        if not match or self.is_complete(model, int(match.group(1))):
            raise ValueError(f"not litter: {label}")
        prefix = self._key(f"{model}/{label}/")
        doomed = [DeleteObject(obj.object_name)
                  for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                  if obj.object_name[len(prefix):] != CLAIM_FILE]
        errors = list(self.client.remove_objects(self.bucket, doomed))
        if errors:
            raise RegistryError(f"could not remove {self.root_uri}/{model}/{label}: {errors[0]}")
        # Keep (or put back) the claim, so the number stays taken.
        if not self._exists(f"{model}/{label}/{CLAIM_FILE}"):
            self._put(f"{model}/{label}/{CLAIM_FILE}", dumps({"collected_at": utc_now()}).encode(), "application/json")
