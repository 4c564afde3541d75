"""Registry storage in an S3 bucket (MinIO in the cluster) through the minio SDK.

S3 has no rename, so a version's files are uploaded first and a ``_COMPLETE``
marker (a manifest of the files) last; readers only see versions with a marker.
A single PUT replaces an object atomically, which is what the aliases rely on.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from tollgate.errors import RegistryError
from tollgate.registry.base import METADATA_FILE, Store, dumps, utc_now
from tollgate.s3 import client_from_env, parse_s3_uri

COMPLETE_MARKER = "_COMPLETE"
_VERSION_KEY = re.compile(r"v(\d+)/$")


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
            if include_incomplete or self._exists(f"{model}/v{number}/{COMPLETE_MARKER}"):
                numbers.append(number)
        return sorted(numbers)

    def is_complete(self, model: str, version: int) -> bool:
        self._ensure_bucket()
        return self._exists(f"{model}/v{version}/{COMPLETE_MARKER}")

    def _exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    def _put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data), content_type=content_type)

    def publish(self, model: str, source_dir: Path, metadata: dict[str, Any]) -> int:
        self._ensure_bucket()
        # Incomplete versions keep their number: a crashed upload is never silently overwritten.
        version = max(self.version_numbers(model, include_incomplete=True), default=0) + 1
        base = f"{model}/v{version}"
        files = sorted(p for p in source_dir.rglob("*") if p.is_file() and p.name != METADATA_FILE)
        manifest = []
        for path in files:
            relative = path.relative_to(source_dir).as_posix()
            self.client.fput_object(self.bucket, self._key(f"{base}/{relative}"), str(path))
            manifest.append({"path": relative, "bytes": path.stat().st_size})
        record = {**metadata, "version": version, "created_at": utc_now()}
        self._put(f"{base}/{METADATA_FILE}", dumps(record).encode(), "application/json")
        self._put(f"{base}/{COMPLETE_MARKER}", dumps({"files": manifest}).encode(), "application/json")
        return version

    def read_json(self, key: str) -> dict[str, Any] | None:
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            response = self.client.get_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise
        try:
            return json.loads(response.read())
        finally:
            response.close()
            response.release_conn()

    def write_json_atomic(self, key: str, value: dict[str, Any]) -> None:
        self._ensure_bucket()
        self._put(key, dumps(value).encode(), "application/json")

    def download(self, model: str, version: int, dest: Path) -> Path:
        self._ensure_bucket()
        dest.mkdir(parents=True, exist_ok=True)
        prefix = self._key(f"{model}/v{version}/")
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            relative = obj.object_name[len(prefix):]
            if relative == COMPLETE_MARKER:
                continue
            self.client.fget_object(self.bucket, obj.object_name, str(dest / relative))
        return dest

    def version_uri(self, model: str, version: int) -> str:
        return f"{self.root_uri}/{model}/v{version}"

    def models(self) -> list[str]:
        self._ensure_bucket()
        names = []
        for obj in self.client.list_objects(self.bucket, prefix=self._key("") or None, recursive=False):
            if obj.is_dir:
                name = obj.object_name.rstrip("/").rsplit("/", 1)[-1]
                if self.version_numbers(name):
                    names.append(name)
        return sorted(names)
