"""Model registry: immutable versions and aliases on local disk or S3."""

from __future__ import annotations

from tollgate.registry.base import (
    ALIASES,
    METADATA_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    ModelVersion,
    Registry,
    Store,
)
from tollgate.s3 import is_s3_uri


def open_registry(uri: str) -> Registry:
    """Open the registry at a local directory or ``s3://bucket[/prefix]``."""
    if is_s3_uri(uri):
        from tollgate.registry.s3 import S3Store

        return Registry(S3Store(uri))
    from tollgate.registry.local import LocalStore

    return Registry(LocalStore(uri))


__all__ = ["ALIASES", "METADATA_FILE", "MODEL_FILE", "SCHEMA_FILE", "ModelVersion", "Registry", "Store", "open_registry"]
