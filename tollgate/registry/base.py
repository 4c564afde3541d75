"""The model registry: immutable versions and the ``production`` / ``previous`` aliases.

Layout, identical on both backends::

    <root>/<model>/v<N>/model.onnx            the graph that is gated and served
    <root>/<model>/v<N>/model.joblib          the fitted scikit-learn Pipeline (training artifact only)
    <root>/<model>/v<N>/input_schema.json     columns, dtypes, categories
    <root>/<model>/v<N>/data_schema.json      the training data's schema (validating later data)
    <root>/<model>/v<N>/metadata.json         metrics, parameters, lineage
    <root>/<model>/v<N>/_COMPLETE             the manifest: sha256 and size of every other file
    <root>/<model>/aliases.json               {"production": {...}, "previous": {...}}

Guarantees (both backends):

* **Versions are claimed atomically.** Locally a version becomes visible with one
  ``os.rename`` of a staging directory, which fails if ``v<N>`` exists; on S3 a writer
  first creates ``v<N>/_CLAIM`` with ``If-None-Match: *`` and takes N+1 on 412. A number
  is never handed out twice, and a claimed-but-unfinished number is never reused.
* **Alias moves are compare-and-swap.** Every alias change reads ``aliases.json`` with a
  token (S3: its ETag; locally: its content digest under an ``fcntl`` lock), computes the
  new state, and writes only if the token still matches; a loser re-reads and re-applies
  (promote) or fails saying what changed (rollback, conditional promotion). Both aliases
  live in one object, so a reader never sees ``production`` moved but ``previous`` not.
* **Integrity before deserialization.** ``_COMPLETE`` records the sha256 and size of every
  file of the version (whatever its name), written last. :meth:`Registry.download`
  copies a version to a private directory, hashing each file as it lands, and raises
  :class:`RegistryIntegrityError` naming the file and both digests before anyone can
  unpickle or parse it. Versions from before digests are read as "unverified (no digests)".
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import random
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

from tollgate.errors import ChampionChangedError, RegistryCorruptError, RegistryError, RegistryIntegrityError
from tollgate.holds import hold_while_file_exists

if TYPE_CHECKING:
    from tollgate.records import DataSchema, VersionMetadata

logger = logging.getLogger(__name__)

ALIASES = ("production", "previous")
VERSION_DIR = re.compile(r"^v(\d+)$")
MODEL_FILE = "model.joblib"
ONNX_FILE = "model.onnx"
SCHEMA_FILE = "input_schema.json"
METADATA_FILE = "metadata.json"
# The training data's schema (written by validate, published by register, read by the next validate).
DATA_SCHEMA_FILE = "data_schema.json"
MANIFEST_FILE = "_COMPLETE"
# S3 only: created with If-None-Match: * to claim a version number before any upload.
CLAIM_FILE = "_CLAIM"
ALIASES_FILE = "aliases.json"
REQUIRED_FILES = (ONNX_FILE, SCHEMA_FILE)
# Tests hold a rollback after its first read of the aliases (while the file named here exists),
# so two real processes are certain to race for the same write. Unset in normal use.
ROLLBACK_HOLD_ENV = "TOLLGATE_TEST_HOLD_ROLLBACK"
# Files readers parse as JSON objects; a download checks their shape so readers need not.
JSON_OBJECT_FILES = (METADATA_FILE, SCHEMA_FILE, DATA_SCHEMA_FILE)
MANIFEST_FORMAT = 2
# Alias CAS retries: each retry follows a real concurrent write, so this bounds contention, not time.
CAS_ATTEMPTS = 200


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def sha256_file(path: Path) -> tuple[str, int]:
    """The hex sha256 and size in bytes of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def make_manifest(version: int, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of a version from its files' ``{"path", "bytes", "sha256"}`` entries (sorted by path)."""
    return {"format": MANIFEST_FORMAT, "version": version, "created_at": utc_now(),
            "files": sorted(files, key=lambda entry: str(entry["path"]))}


def build_manifest(directory: Path, version: int) -> dict[str, Any]:
    """The manifest of every file under ``directory`` (except the manifest itself)."""
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST_FILE:
            continue
        sha, size = sha256_file(path)
        files.append({"path": relative, "bytes": size, "sha256": sha})
    return make_manifest(version, files)


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """Parse and shape-check a manifest; :class:`RegistryCorruptError` naming ``where`` otherwise."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryCorruptError(f"{where} is not valid JSON ({_short(exc)})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("bytes"), int)
            and isinstance(f.get("sha256", ""), str) for f in files):
        raise RegistryCorruptError(f"{where} is not a version manifest (expected {{\"files\": [{{path, bytes, "
                                   f"sha256}}, ...]}}, got {type(manifest).__name__})")
    for entry in files:
        if entry["path"].startswith("/") or ".." in entry["path"].split("/"):
            raise RegistryCorruptError(f"{where} lists a path outside the version: {entry['path']!r}")
    return manifest


def has_digests(manifest: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """True when a manifest records a sha256 for every file (versions registered since digests)."""
    return manifest is not None and bool(manifest.get("files")) and all(
        f.get("sha256") for f in manifest["files"]) and any(f["path"] == METADATA_FILE for f in manifest["files"])


def check_file(path: Path, entry: dict[str, Any], where: str) -> None:
    """Compare a file on disk with its manifest entry; raise naming the file and both digests."""
    sha, size = sha256_file(path)
    if entry.get("sha256") and (sha != entry["sha256"] or size != entry["bytes"]):
        raise RegistryIntegrityError(
            f"{where} does not match its manifest: sha256 {sha} ({size} bytes), recorded "
            f"{entry['sha256']} ({entry['bytes']} bytes); the file was changed after registration")
    if not entry.get("sha256") and size != entry["bytes"]:
        raise RegistryIntegrityError(f"{where} is {size} bytes, its manifest recorded {entry['bytes']}")


def parse_json_object(raw: bytes, where: str) -> dict[str, Any]:
    """Parse a registry JSON file that must hold an object; one clear error otherwise."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryCorruptError(f"{where} is not valid JSON ({_short(exc)})") from None
    if not isinstance(value, dict):
        raise RegistryCorruptError(f"{where} holds a JSON {type(value).__name__}, expected an object")
    return value


def verify_directory(directory: str | Path) -> str:
    """Check a version directory in place against its ``_COMPLETE`` manifest.

    Returns ``"verified"`` or ``"unverified (no digests)"`` (no manifest, or one from before
    digests); raises :class:`RegistryIntegrityError` / :class:`RegistryCorruptError`.
    Used where a version directory is read directly (KServe's /mnt/models, infra-validation).
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        return "unverified (no digests)"
    manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path))
    for entry in manifest["files"]:
        path = directory / entry["path"]
        if not path.is_file():
            raise RegistryIntegrityError(f"{path} is missing; the manifest lists it")
        check_file(path, entry, str(path))
    return "verified" if has_digests(manifest) else "unverified (no digests)"


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


# A version's directory is <registry root>/<model>/v<N> (Store.version_uri, in every store).
_VERSION_URI = re.compile(r"^(?P<root>.+)/(?P<model>[^/]+)/v(?P<version>\d+)/?$")


def split_version_uri(uri: str) -> tuple[str, str, int] | None:
    """``(registry root, model, version)`` of a version directory's URI (the inverse of
    ``Store.version_uri``), or None when ``uri`` is not laid out like one."""
    match = _VERSION_URI.match(uri.rstrip("/"))
    return (match["root"], match["model"], int(match["version"])) if match else None


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

    @property
    def record(self) -> VersionMetadata:
        """``metadata.json`` read as a :class:`~tollgate.records.VersionMetadata` (an older format
        upgraded, a newer one refused)."""
        from tollgate.records import VersionMetadata

        return VersionMetadata.from_dict(self.metadata)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one version: ``ok`` (digests match), ``unverified`` or ``failed``."""

    model: str
    version: int
    status: str
    detail: str


@dataclass
class GcReport:
    """What :meth:`Registry.gc` removed (or would remove, in a dry run)."""

    removed: list[str] = field(default_factory=list)
    kept_recent: list[str] = field(default_factory=list)


class Store(ABC):
    """Storage primitives a backend provides; all registry logic lives in :class:`Registry`.

    Keys are relative to the registry root (``<model>/v3/model.joblib``).
    """

    root_uri: str

    @abstractmethod
    def version_numbers(self, model: str, include_incomplete: bool = False) -> list[int]:
        """Version numbers of ``model``; incomplete ones only when asked (to avoid reusing a number)."""

    @abstractmethod
    def is_complete(self, model: str, version: int) -> bool:
        """True if ``version`` of ``model`` exists and is complete (one cheap check, no listing)."""

    @abstractmethod
    def publish(self, model: str, source_dir: Path, metadata: dict[str, Any]) -> int:
        """Store ``source_dir`` plus ``metadata`` and a manifest as a newly claimed version number;
        visible only when complete."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None if absent."""

    @abstractmethod
    def fetch_file(self, key: str, dest: Path) -> bool:
        """Copy the object at ``key`` to the local file ``dest``; False if absent."""

    @abstractmethod
    def version_files(self, model: str, version: int) -> list[str]:
        """Relative paths of every file in a version directory (the manifest included)."""

    @abstractmethod
    def read_with_token(self, key: str) -> tuple[bytes | None, str | None]:
        """The bytes at ``key`` and a token naming exactly this content (None, None if absent)."""

    @abstractmethod
    def write_if(self, key: str, data: bytes, token: str | None) -> bool:
        """Write ``data`` at ``key`` only if its content still matches ``token`` (None: only if
        absent), atomically with respect to other :meth:`write_if` callers; False if it did not."""

    @abstractmethod
    def version_uri(self, model: str, version: int) -> str:
        """The URI of a version directory (what KServe's ``storageUri`` points at)."""

    @abstractmethod
    def models(self) -> list[str]:
        """Names of models that have at least one version."""

    @abstractmethod
    def litter(self, model: str) -> list[tuple[str, float]]:
        """Leftovers of crashed writers (label, age in seconds): staging directories, incomplete versions."""

    @abstractmethod
    def remove_litter(self, model: str, label: str) -> None:
        """Remove one leftover named by :meth:`litter`; never a complete version."""

    def model_dirs(self) -> list[str]:
        """Every model directory, including ones holding only litter (for :meth:`Registry.gc`)."""
        return self.models()

    def read_json(self, key: str) -> dict[str, Any] | None:
        """Read a JSON object at ``key`` without verification (None if absent)."""
        raw = self.read_bytes(key)
        return None if raw is None else parse_json_object(raw, f"{self.root_uri}/{key}")


class _Unconditional(enum.Enum):
    """The type of :data:`UNCONDITIONAL` (an enum member, so a type checker can narrow on it)."""

    TOKEN = "unconditional"


# expect_production's default: promote whatever production currently is.
UNCONDITIONAL: Final = _Unconditional.TOKEN
# What a caller may expect production to be: a version, None (no champion yet), or UNCONDITIONAL.
ExpectedProduction = int | None | Literal[_Unconditional.TOKEN]
# read_version_json's default: read the version's manifest first.
_READ_IT = object()


def _label(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


class Registry:
    """Versions and aliases over a :class:`Store`."""

    def __init__(self, store: Store):
        self.store = store

    @property
    def uri(self) -> str:
        return self.store.root_uri

    def _where(self, key: str) -> str:
        return f"{self.uri}/{key}"

    # -- versions -------------------------------------------------------------------------

    def version_numbers(self, model: str) -> list[int]:
        """The numbers of ``model``'s complete versions, oldest first (no metadata is read)."""
        return sorted(self.store.version_numbers(model))

    def has_version(self, model: str, version: int) -> bool:
        """True when ``version`` of ``model`` is complete (no metadata is read)."""
        return self.store.is_complete(model, version)

    def scan_versions(self, model: str) -> tuple[list[ModelVersion], list[str]]:
        """Complete versions of ``model``, oldest first, each with its metadata read (one listing, then
        each version's files: get_version would re-check every number); a version that cannot be read
        becomes a one-line problem instead."""
        from tollgate.records import RecordError

        versions, problems = [], []
        for number in sorted(self.store.version_numbers(model)):
            try:
                version = self._load(model, number)
                version.record  # noqa: B018 (metadata.json written by a newer Tollgate is unreadable here too)
            except (RegistryError, RecordError) as exc:
                problems.append(f"v{number}: {exc}")
                continue
            versions.append(version)
        return versions, problems

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One complete version; :class:`RegistryError` if it does not exist."""
        if not self.store.is_complete(model, version):
            known = sorted(self.store.version_numbers(model))
            raise RegistryError(
                f"{model} v{version} does not exist in {self.uri}"
                + (f" (versions: {', '.join(f'v{n}' for n in known)})" if known else " (no versions yet)")
            )
        return self._load(model, version)

    def manifest(self, model: str, version: int) -> dict[str, Any] | None:
        """The version's manifest, or None for a local version from before manifests."""
        key = f"{model}/v{version}/{MANIFEST_FILE}"
        raw = self.store.read_bytes(key)
        return None if raw is None else parse_manifest(raw, self._where(key))

    def read_version_json(self, model: str, version: int, name: str,
                          manifest: dict[str, Any] | None | object = _READ_IT) -> dict[str, Any] | None:
        """A JSON object file of a version (metadata, schemas), checked against the manifest
        before it is parsed; None if the version has no such file."""
        if not isinstance(manifest, dict | None):  # the _READ_IT sentinel: read it here
            manifest = self.manifest(model, version)
        key = f"{model}/v{version}/{name}"
        raw = self.store.read_bytes(key)
        if raw is None:
            if manifest and any(f["path"] == name for f in manifest["files"]):
                raise RegistryIntegrityError(f"{self._where(key)} is missing; the manifest lists it")
            return None
        entry = next((f for f in manifest["files"] if f["path"] == name), None) if manifest else None
        if entry and entry.get("sha256"):
            sha = hashlib.sha256(raw).hexdigest()
            if sha != entry["sha256"] or len(raw) != entry["bytes"]:
                raise RegistryIntegrityError(
                    f"{self._where(key)} does not match its manifest: sha256 {sha} ({len(raw)} bytes), recorded "
                    f"{entry['sha256']} ({entry['bytes']} bytes); the file was changed after registration")
        elif has_digests(manifest):
            raise RegistryIntegrityError(f"{self._where(key)} is not in the version's manifest")
        return parse_json_object(raw, self._where(key))

    def read_data_schema(self, model: str, version: int) -> DataSchema | None:
        """The ``data_schema.json`` of a version (what its training data looked like), digest-checked
        and read as a :class:`~tollgate.records.DataSchema`; None if the version has none."""
        from tollgate.records import DataSchema

        stored = self.read_version_json(model, version, DATA_SCHEMA_FILE)
        return DataSchema.from_dict(stored) if stored else None  # an empty object describes nothing

    def _load(self, model: str, version: int) -> ModelVersion:
        metadata = self.read_version_json(model, version, METADATA_FILE) or {}
        return ModelVersion(model, version, self.store.version_uri(model, version), metadata)

    def register(self, model: str, source_dir: str | Path, metadata: dict[str, Any]) -> ModelVersion:
        """Publish the files in ``source_dir`` as a new immutable version.

        ``source_dir`` must contain ``model.onnx`` and ``input_schema.json``; ``metadata``
        is stored as ``metadata.json`` with the version number and creation time added, and
        every file's sha256 goes into the version's manifest.
        """
        source_dir = Path(source_dir)
        missing = [name for name in REQUIRED_FILES if not (source_dir / name).is_file()]
        if missing:
            raise RegistryError(f"cannot register {source_dir}: missing {', '.join(missing)}")
        version = self.store.publish(model, source_dir, {**metadata, "model_name": model})
        return self.get_version(model, version)

    def download(self, model: str, version: int, dest: str | Path) -> Path:
        """Copy a complete version into ``dest`` (created if needed), verified.

        Every file the manifest lists is copied and its sha256 and size checked on the copy,
        before anything is parsed or unpickled; a mismatch raises
        :class:`RegistryIntegrityError` naming the file and both digests (and the copied
        files are removed). metadata and schema files must hold JSON objects. This is the one way read paths
        (serving, champion scoring, ``models show``/``verify``) should read a version.
        """
        self.get_version(model, version)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest(model, version)
        base = f"{model}/v{version}"
        copied: list[Path] = []
        try:
            if has_digests(manifest):
                entries = manifest["files"]
            else:  # before digests: every file there, with the sizes an old S3 manifest recorded
                sizes = {f["path"]: f for f in (manifest or {}).get("files", [])}
                entries = [sizes.get(p, {"path": p}) for p in self.store.version_files(model, version)
                           if p not in (MANIFEST_FILE, CLAIM_FILE)]
            for entry in entries:
                target = dest / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                copied.append(target)
                if not self.store.fetch_file(f"{base}/{entry['path']}", target):
                    raise RegistryIntegrityError(f"{self._where(base + '/' + entry['path'])} is missing; "
                                                 "the manifest lists it")
                if "bytes" in entry:
                    check_file(target, entry, self._where(f"{base}/{entry['path']}"))
            for entry in entries:
                if entry["path"] in JSON_OBJECT_FILES:
                    parse_json_object((dest / entry["path"]).read_bytes(),
                                      self._where(f"{base}/{entry['path']}"))
            if manifest is not None:
                (dest / MANIFEST_FILE).write_text(dumps(manifest))
        except RegistryError:
            for path in copied:
                path.unlink(missing_ok=True)
            raise
        if not has_digests(manifest):
            logger.warning("%s v%s is unverified (no digests): registered before Tollgate recorded sha256",
                           model, version)
        return dest

    def verify(self, model: str, version: int) -> VerifyResult:
        """Check every file of a version against its manifest (for ``tollgate models verify``)."""
        try:
            manifest = self.manifest(model, version)
            with tempfile.TemporaryDirectory(prefix="tollgate-verify-") as tmp:
                self.download(model, version, tmp)
        except RegistryError as exc:
            return VerifyResult(model, version, "failed", str(exc))
        if not has_digests(manifest):
            return VerifyResult(model, version, "unverified", "unverified (no digests): registered before "
                                "Tollgate recorded sha256; re-register it to protect it")
        count = len(manifest["files"])
        return VerifyResult(model, version, "ok", f"{count} files match their sha256")

    # -- aliases --------------------------------------------------------------------------

    def _aliases_key(self, model: str) -> str:
        return f"{model}/{ALIASES_FILE}"

    def _parse_aliases(self, model: str, raw: bytes | None) -> dict[str, dict[str, Any]]:
        if raw is None:
            return {}
        where = self._where(self._aliases_key(model))
        hint = "; `tollgate models promote vN` rewrites it"
        try:
            value = parse_json_object(raw, where)
        except RegistryCorruptError as exc:
            raise RegistryCorruptError(f"{exc}{hint}") from None
        for alias, record in value.items():
            if alias not in ALIASES or not isinstance(record, dict) or not isinstance(record.get("version"), int) \
                    or isinstance(record.get("version"), bool):
                raise RegistryCorruptError(f"{where} has an invalid entry {alias!r}: expected "
                                           f"{{\"version\": <int>, ...}} under production/previous{hint}")
        return value

    def aliases(self, model: str) -> dict[str, dict[str, Any]]:
        """The alias records of ``model``: ``{"production": {"version": N, ...}, ...}``."""
        return self._parse_aliases(model, self.store.read_bytes(self._aliases_key(model)))

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
                raise self._absent(model, f"{model} has no {text!r} alias yet in {self.uri}; run `tollgate run` first")
            return self.get_version(model, version)
        match = re.fullmatch(r"v?(\d+)", text)
        if not match:
            raise RegistryError(f"{ref!r} is neither an alias ({', '.join(ALIASES)}) nor a version like v3")
        return self.get_version(model, int(match.group(1)))

    def _absent(self, model: str, message: str) -> RegistryError:
        """``message``, or, when ``model`` has no version here at all, which models this registry
        does hold: the likely mistake is a missing --model-name, not a missing run."""
        if self.store.version_numbers(model):
            return RegistryError(message)
        others = [name for name in self.models() if name != model]
        if not others:
            return RegistryError(message)
        listed = ", ".join(repr(name) for name in others[:10]) + (" ..." if len(others) > 10 else "")
        return RegistryError(f"{self.uri} has no model {model!r}; it holds {listed}: pass --model-name "
                             f"{others[0]} (or set model_name in the config)")

    def _ways_forward(self, model: str, version: int, problem: str) -> RegistryError:
        try:
            previous = self.alias_version(model, "previous")
        except RegistryError:
            previous = None
        back = f" (back to v{previous})" if previous is not None else ""
        return RegistryError(
            f"the production model {model} v{version} is unreadable: {problem}. Ways forward: "
            f"`tollgate models rollback`{back}, or `tollgate models promote vN` for a version that "
            f"`tollgate models verify` passes; then run again")

    def champion(self, model: str) -> ModelVersion | None:
        """The version behind ``production``, or None when no model has been promoted.

        An unreadable champion raises one error naming the version and the ways forward.
        """
        version = self.alias_version(model, "production")
        if version is None:
            return None
        try:
            return self.get_version(model, version)
        except (RegistryIntegrityError, RegistryCorruptError) as exc:
            raise self._ways_forward(model, version, str(exc)) from None

    def download_champion(self, model: str, dest: str | Path, version: int | None = None) -> ModelVersion | None:
        """Verified copy of the champion (``version`` if given, else production's) into ``dest``
        (see :meth:`download`); None if there is none. A failure names the ways forward."""
        if version is None:
            champion = self.champion(model)
            if champion is None:
                return None
        else:
            try:
                champion = self.get_version(model, version)
            except (RegistryIntegrityError, RegistryCorruptError) as exc:
                raise self._ways_forward(model, version, str(exc)) from None
        try:
            self.download(model, champion.version, dest)
        except (RegistryIntegrityError, RegistryCorruptError) as exc:
            raise self._ways_forward(model, champion.version, str(exc)) from None
        return champion

    def unreadable_champion(self, model: str, version: int, problem: str) -> RegistryError:
        """The error for a champion whose verified files still cannot be used (e.g. its graph does not load)."""
        return self._ways_forward(model, version, problem)

    def update_aliases(self, model: str,
                       change: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]] | None],
                       allow_corrupt: bool = False) -> dict[str, dict[str, Any]]:
        """Compare-and-swap ``aliases.json``: apply ``change`` to the current state and write the
        result only if nobody wrote in between; otherwise re-read and apply again.

        ``change`` returns the new state, or None for "leave as is", and may raise to give up
        (it sees every state it is re-applied to). ``allow_corrupt`` hands it ``{}`` in place of
        an unparsable file, so that a promotion can repair it.
        """
        key = self._aliases_key(model)
        for attempt in range(CAS_ATTEMPTS):
            raw, token = self.store.read_with_token(key)
            try:
                current = self._parse_aliases(model, raw)
            except RegistryCorruptError:
                if not allow_corrupt:
                    raise
                logger.warning("rewriting corrupt %s", self._where(key))
                current = {}
            updated = change(current)
            if updated is None:
                return current
            if self.store.write_if(key, dumps(updated).encode(), token):
                return updated
            time.sleep(random.uniform(0, 0.005 * min(attempt + 1, 20)))  # back off under contention
        raise RegistryError(f"{self._where(key)} kept changing under {CAS_ATTEMPTS} attempts; try again")

    def promote(self, model: str, version: int, reason: str = "promote",
                expect_production: ExpectedProduction = UNCONDITIONAL) -> dict[str, dict[str, Any]]:
        """Point ``production`` at ``version``; the old production becomes ``previous``.

        With ``expect_production`` (a version, or None for "no champion yet") the move happens
        only if ``production`` is still there; otherwise :class:`ChampionChangedError`, and
        nothing changes. Without it, a concurrent move is re-read and the promotion re-applied.
        """
        self.get_version(model, version)

        def change(current):
            production = current.get("production")
            actual = int(production["version"]) if production else None
            if expect_production is not UNCONDITIONAL and actual != expect_production:
                raise ChampionChangedError(
                    f"champion changed during the run: {_label(expect_production)} → {_label(actual)}; "
                    f"not promoted — rerun to compare against {_label(actual)}",
                    expected=expect_production, actual=actual)
            if actual == version:
                return None
            updated = {"production": self._record(version, reason)}
            if actual is not None:
                updated["previous"] = self._record(actual, reason)
            return updated

        return self.update_aliases(model, change, allow_corrupt=expect_production is UNCONDITIONAL)

    def rollback(self, model: str) -> dict[str, dict[str, Any]]:
        """Point ``production`` back at ``previous``.

        ``previous`` then moves to the champion that the restored version had itself
        replaced (from its metadata), so repeated rollbacks walk back the lineage. If
        ``production`` moves while this runs, nothing changes and the error says how.
        """
        seen: dict[str, Any] = {}

        def change(current):
            production = current.get("production")
            actual = int(production["version"]) if production else None
            if "first" not in seen:
                seen["first"] = actual
                hold_while_file_exists(ROLLBACK_HOLD_ENV)
            elif actual != seen["first"]:
                raise ChampionChangedError(
                    f"production moved from {_label(seen['first'])} to {_label(actual)} while rolling back; "
                    "nothing changed", expected=seen["first"], actual=actual)
            if "previous" not in current:
                raise RegistryError(f"{model} has no 'previous' alias: nothing to roll back to")
            target = int(current["previous"]["version"])
            restored = self.get_version(model, target)
            updated = {"production": self._record(target, "rollback")}
            before = restored.record.replaced_champion
            if isinstance(before, int) and before != target and self.store.is_complete(model, before):
                updated["previous"] = self._record(before, "rollback")
            return updated

        return self.update_aliases(model, change)

    def restore_aliases(self, model: str, snapshot: dict[str, dict[str, Any]],
                        only_if: dict[str, dict[str, Any]] | None = None) -> bool:
        """Put back an alias state captured earlier with :meth:`aliases` (deploy failure path).

        With ``only_if``, only while the aliases are still exactly that state (what this
        writer set); returns False when someone else moved them meanwhile.
        """
        def change(current):
            if only_if is not None and current != only_if:
                raise ChampionChangedError("aliases moved since this deploy set them; not restored")
            return snapshot

        try:
            self.update_aliases(model, change)
        except ChampionChangedError:
            return False
        return True

    def models(self) -> list[str]:
        """Models with at least one complete version."""
        return self.store.models()

    # -- garbage ------------------------------------------------------------------------

    def gc(self, older_than_seconds: float = 3600.0, dry_run: bool = False,
           models: list[str] | None = None) -> GcReport:
        """Remove crashed writers' leftovers older than the bound: staging directories and
        incomplete versions. Complete versions and alias targets are never touched."""
        report = GcReport()
        for model in models if models is not None else self.store.model_dirs():
            protected = set()
            try:
                protected = {int(r["version"]) for r in self.aliases(model).values()}
            except RegistryError:
                pass
            for label, age in self.store.litter(model):
                match = re.fullmatch(r"v(\d+)", label)
                if match and (int(match.group(1)) in protected or self.store.is_complete(model, int(match.group(1)))):
                    continue
                name = f"{model}/{label}"
                if age < older_than_seconds:
                    report.kept_recent.append(name)
                    continue
                if not dry_run:
                    self.store.remove_litter(model, label)
                report.removed.append(name)
        return report

    @staticmethod
    def _record(version: int, reason: str) -> dict[str, Any]:
        return {"version": version, "updated_at": utc_now(), "reason": reason}


def dumps(value: dict[str, Any]) -> str:
    """Stable, readable JSON for registry files."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
