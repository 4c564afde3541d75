"""Model registry: immutable versions and aliases on local disk or S3.

Read a version's files only through :meth:`Registry.download` (verified copy), or
:meth:`Registry.download_champion` for the production model; a directory already on
disk (KServe's /mnt/models) is checked with :func:`verify_directory`.
"""

from __future__ import annotations

from tollgate.registry.base import (
    ALIASES,
    DATA_SCHEMA_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ONNX_FILE,
    SCHEMA_FILE,
    GcReport,
    ModelVersion,
    Registry,
    Store,
    VerifyResult,
    verify_directory,
)
from tollgate.s3 import is_s3_uri


def open_registry(uri: str) -> Registry:
    """Open the registry at a local directory or ``s3://bucket[/prefix]``."""
    if is_s3_uri(uri):
        from tollgate.registry.s3 import S3Store

        return Registry(S3Store(uri))
    from tollgate.registry.local import LocalStore

    return Registry(LocalStore(uri))


__all__ = ["ALIASES", "DATA_SCHEMA_FILE", "MANIFEST_FILE", "METADATA_FILE", "MODEL_FILE", "ONNX_FILE", "SCHEMA_FILE", "GcReport",
           "ModelVersion", "Registry", "Store", "VerifyResult", "open_registry", "verify_directory"]
