"""Where a served version comes from: a local directory, an ``s3://`` version URI, or a registry reference.

All three end as a local directory holding ``model.onnx``, ``input_schema.json`` and
``metadata.json`` — the layout the registry writes and KServe's storage-initializer
copies to ``/mnt/models``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tollgate.errors import TollgateError
from tollgate.registry import open_registry, verify_directory
from tollgate.registry.base import split_version_uri
from tollgate.s3 import is_s3_uri

KSERVE_MODEL_DIR = "/mnt/models"


def fetch_version_uri(uri: str, cache_dir: str | Path | None = None) -> Path:
    """Resolve a version directory: local path as-is, ``s3://root/<model>/v<N>`` downloaded through the registry."""
    if not is_s3_uri(uri):
        path = Path(uri)
        if not path.is_dir():
            raise TollgateError(f"model directory {path} does not exist")
        verify_directory(path)  # against its _COMPLETE manifest, before the graph is parsed
        return path
    parts = split_version_uri(uri)
    if parts is None:
        raise TollgateError(f"{uri} is not a registry version URI; expected s3://bucket[/prefix]/<model>/v<N>")
    root, model, version = parts
    dest = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="tollgate-serve-"))
    return open_registry(root).download(model, version, dest)


def fetch_registered(registry_uri: str, model_name: str, ref: str | int,
                     cache_dir: str | Path | None = None) -> tuple[Path, int]:
    """Resolve ``production``/``previous``/``v3``/``3`` in a registry to a local directory and its version."""
    registry = open_registry(registry_uri)
    version = registry.resolve(model_name, ref)
    # Always a verified private copy (also for a local registry): what is checked is what loads.
    dest = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="tollgate-serve-"))
    return registry.download(model_name, version.version, dest), version.version
