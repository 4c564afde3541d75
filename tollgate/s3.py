"""S3 access through the minio SDK. Endpoint and credentials come from the environment only.

Variables (the same ones KServe's storage-initializer and the AWS tools understand):
``S3_ENDPOINT`` or ``AWS_ENDPOINT_URL`` (``http://host:port`` or ``host:port``),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_REGION`` and
``S3_USE_HTTPS`` (``0``/``1``, used when the endpoint has no scheme).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

from tollgate.errors import TollgateError


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (or key prefix) parsed from ``s3://bucket/key``."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def is_s3_uri(value: str) -> bool:
    """True for ``s3://...`` strings."""
    return value.startswith("s3://")


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/some/key`` into bucket and key; the key may be empty."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise TollgateError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return S3Location(bucket=parsed.netloc, key=parsed.path.lstrip("/"))


def client_from_env():
    """Build a ``minio.Minio`` client from environment variables, or explain what is missing."""
    from minio import Minio

    endpoint = os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    missing = [name for name, value in (
        ("S3_ENDPOINT (or AWS_ENDPOINT_URL)", endpoint),
        ("AWS_ACCESS_KEY_ID", access_key),
        ("AWS_SECRET_ACCESS_KEY", secret_key),
    ) if not value]
    if missing:
        raise TollgateError(
            "S3 access needs these environment variables: " + ", ".join(missing)
            + " (for the kind cluster's MinIO see README, 'Run on kind')"
        )
    assert endpoint and access_key and secret_key  # for the type checker: each was in `missing` otherwise
    if "://" in endpoint:
        parsed = urlparse(endpoint)
        host, secure = parsed.netloc, parsed.scheme == "https"
    else:
        host, secure = endpoint, os.environ.get("S3_USE_HTTPS", "0") == "1"
    return Minio(host, access_key=access_key, secret_key=secret_key, secure=secure,
                 region=os.environ.get("AWS_REGION") or None)


def put_conditional(client, bucket: str, key: str, data: bytes, *, if_match: str | None = None,
                    if_none_match: bool = False, content_type: str = "application/octet-stream") -> str | None:
    """PUT one object only if a precondition holds; returns the new ETag, or None if it did not.

    ``if_none_match=True`` sends ``If-None-Match: *`` (create only if absent); ``if_match``
    sends ``If-Match: "<etag>"`` (replace only if unchanged). AWS S3, MinIO and the
    S3-compatible test server answer 412 PreconditionFailed when the condition fails; AWS
    answers 404 for If-Match on a missing key and 409 when two conditional writes collide.

    minio 7.2.20's public ``put_object`` turns unknown headers into ``x-amz-meta-*`` user
    metadata, so this goes through its ``_put_object`` (one PutObject call with the headers
    as given); tests/test_registry_concurrency.py pins that behaviour.
    """
    from minio.error import S3Error

    headers = {"Content-Type": content_type}
    if if_none_match:
        headers["If-None-Match"] = "*"
    if if_match is not None:
        headers["If-Match"] = f'"{if_match.strip(chr(34))}"'
    try:
        result = client._put_object(bucket, key, data, headers=headers)
    except S3Error as exc:
        if exc.code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or \
                (exc.response is not None and exc.response.status in (409, 412)):
            return None
        raise
    return result.etag
