"""The model registry: immutable versions and the ``production`` / ``previous`` aliases.

Layout, identical on both backends::

    <root>/<model>/v<N>/model.joblib          the fitted scikit-learn Pipeline
    <root>/<model>/v<N>/input_schema.json     columns, dtypes, categories
    <root>/<model>/v<N>/metadata.json         metrics, parameters, lineage
    <root>/<model>/aliases.json               {"production": {...}, "previous": {...}}

A version is visible only once complete (the backend decides how: an atomic
directory rename locally, a completion marker written last on S3). Both aliases
live in one small JSON object so that a promotion moves them together in one
atomic write: a reader never sees ``production`` moved but ``previous`` not.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tollgate.errors import RegistryError

ALIASES = ("production", "previous")
VERSION_DIR = re.compile(r"^v(\d+)$")
MODEL_FILE = "model.joblib"
SCHEMA_FILE = "input_schema.json"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (MODEL_FILE, SCHEMA_FILE)


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ModelVersion:
    """A complete, registered version and its metadata."""

    model: str
    version: int
    uri: str
    metadata: dict[str, Any]

    @property
    def created_at(self) -> str:
        return self.metadata.get("created_at", "")


class Store(ABC):
    """Storage primitives a backend provides; all registry logic lives in :class:`Registry`."""

    root_uri: str

    @abstractmethod
    def version_numbers(self, model: str, include_incomplete: bool = False) -> list[int]:
        """Version numbers of ``model``; incomplete ones only when asked (to avoid reusing a number)."""

    @abstractmethod
    def is_complete(self, model: str, version: int) -> bool:
        """True if ``version`` of ``model`` exists and is complete (one cheap check, no listing)."""

    @abstractmethod
    def publish(self, model: str, source_dir: Path, metadata: dict[str, Any]) -> int:
        """Store ``source_dir`` plus ``metadata`` as the next version; visible only when complete."""

    @abstractmethod
    def read_json(self, key: str) -> dict[str, Any] | None:
        """Read a JSON object at ``key`` (relative to the root), or None if absent."""

    @abstractmethod
    def write_json_atomic(self, key: str, value: dict[str, Any]) -> None:
        """Replace the JSON object at ``key`` in one atomic step."""

    @abstractmethod
    def download(self, model: str, version: int, dest: Path) -> Path:
        """Copy a complete version's files into ``dest`` and return it."""

    @abstractmethod
    def version_uri(self, model: str, version: int) -> str:
        """The URI of a version directory (what KServe's ``storageUri`` points at)."""

    @abstractmethod
    def models(self) -> list[str]:
        """Names of models that have at least one version."""


class Registry:
    """Versions and aliases over a :class:`Store`."""

    def __init__(self, store: Store):
        self.store = store

    @property
    def uri(self) -> str:
        return self.store.root_uri

    # -- versions -------------------------------------------------------------------------

    def list_versions(self, model: str) -> list[ModelVersion]:
        """Complete versions of ``model``, oldest first."""
        # One listing, then each version's metadata: get_version would re-check every number.
        return [self._load(model, n) for n in sorted(self.store.version_numbers(model))]

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One complete version; :class:`RegistryError` if it does not exist."""
        if not self.store.is_complete(model, version):
            known = sorted(self.store.version_numbers(model))
            raise RegistryError(
                f"{model} v{version} does not exist in {self.uri}"
                + (f" (versions: {', '.join(f'v{n}' for n in known)})" if known else " (no versions yet)")
            )
        return self._load(model, version)

    def _load(self, model: str, version: int) -> ModelVersion:
        metadata = self.store.read_json(f"{model}/v{version}/{METADATA_FILE}") or {}
        return ModelVersion(model, version, self.store.version_uri(model, version), metadata)

    def register(self, model: str, source_dir: str | Path, metadata: dict[str, Any]) -> ModelVersion:
        """Publish the files in ``source_dir`` as a new immutable version.

        ``source_dir`` must contain ``model.joblib`` and ``input_schema.json``; ``metadata``
        is stored as ``metadata.json`` with the version number and creation time added.
        """
        source_dir = Path(source_dir)
        missing = [name for name in REQUIRED_FILES if not (source_dir / name).is_file()]
        if missing:
            raise RegistryError(f"cannot register {source_dir}: missing {', '.join(missing)}")
        version = self.store.publish(model, source_dir, {**metadata, "model_name": model})
        return self.get_version(model, version)

    def download(self, model: str, version: int, dest: str | Path) -> Path:
        """Fetch a complete version into ``dest`` (created if needed)."""
        self.get_version(model, version)
        return self.store.download(model, version, Path(dest))

    # -- aliases --------------------------------------------------------------------------

    def aliases(self, model: str) -> dict[str, dict[str, Any]]:
        """The alias records of ``model``: ``{"production": {"version": N, ...}, ...}``."""
        return self.store.read_json(f"{model}/aliases.json") or {}

    def alias_version(self, model: str, alias: str) -> int | None:
        """The version an alias points at, or None if the alias is not set."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        record = self.aliases(model).get(alias)
        return int(record["version"]) if record else None

    def resolve(self, model: str, ref: str | int) -> ModelVersion:
        """Resolve ``production``, ``previous``, ``v3`` or ``3`` to a complete version."""
        text = str(ref)
        if text in ALIASES:
            version = self.alias_version(model, text)
            if version is None:
                raise RegistryError(f"{model} has no {text!r} alias yet in {self.uri}; run `tollgate run` first")
            return self.get_version(model, version)
        match = re.fullmatch(r"v?(\d+)", text)
        if not match:
            raise RegistryError(f"{ref!r} is neither an alias ({', '.join(ALIASES)}) nor a version like v3")
        return self.get_version(model, int(match.group(1)))

    def champion(self, model: str) -> ModelVersion | None:
        """The version behind ``production``, or None when no model has been promoted."""
        version = self.alias_version(model, "production")
        return None if version is None else self.get_version(model, version)

    def promote(self, model: str, version: int, reason: str = "promote") -> dict[str, dict[str, Any]]:
        """Point ``production`` at ``version``; the old production becomes ``previous``."""
        self.get_version(model, version)
        current = self.aliases(model)
        old_production = current.get("production")
        if old_production and int(old_production["version"]) == version:
            return current
        updated = {"production": self._record(version, reason)}
        if old_production:
            updated["previous"] = self._record(int(old_production["version"]), reason)
        self.store.write_json_atomic(f"{model}/aliases.json", updated)
        return updated

    def rollback(self, model: str) -> dict[str, dict[str, Any]]:
        """Point ``production`` back at ``previous``.

        ``previous`` then moves to the champion that the restored version had itself
        replaced (from its metadata), so repeated rollbacks walk back the lineage.
        """
        current = self.aliases(model)
        if "previous" not in current:
            raise RegistryError(f"{model} has no 'previous' alias: nothing to roll back to")
        target = int(current["previous"]["version"])
        restored = self.get_version(model, target)
        updated = {"production": self._record(target, "rollback")}
        before = restored.metadata.get("replaced_champion")
        if before is not None and self.store.is_complete(model, int(before)):
            updated["previous"] = self._record(int(before), "rollback")
        self.store.write_json_atomic(f"{model}/aliases.json", updated)
        return updated

    def restore_aliases(self, model: str, snapshot: dict[str, dict[str, Any]]) -> None:
        """Put back an alias state captured earlier with :meth:`aliases` (deploy failure path)."""
        self.store.write_json_atomic(f"{model}/aliases.json", snapshot)

    def models(self) -> list[str]:
        """Models with at least one complete version."""
        return self.store.models()

    @staticmethod
    def _record(version: int, reason: str) -> dict[str, Any]:
        return {"version": version, "updated_at": utc_now(), "reason": reason}


def dumps(value: dict[str, Any]) -> str:
    """Stable, readable JSON for registry files."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
