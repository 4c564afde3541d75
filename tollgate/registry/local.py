"""Registry storage in a local directory.

A version is assembled in a hidden staging directory, its manifest (sha256 of every
file) written last, and made visible with one ``os.rename`` to ``v<N>``: rename is atomic
on POSIX, and it fails if ``v<N>`` already exists, which also settles two writers racing
for the same number.

``aliases.json`` is replaced with ``os.replace`` (readers see the old or the new file,
never a mix) under an exclusive ``fcntl`` lock on ``.aliases.lock``, inside which the
writer checks that the file is still the one it read: a compare-and-swap between
processes on one machine (and on NFS v4, where ``flock`` is emulated with byte-range
locks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tollgate.registry.base import MANIFEST_FILE, METADATA_FILE, VERSION_DIR, Store, build_manifest, dumps, utc_now

STAGING_PREFIX = ".staging-"
LOCK_FILE = ".aliases.lock"


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore(Store):
    """Versions and aliases under a directory on local disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root_uri = str(self.root)

    def version_numbers(self, model: str, include_incomplete: bool = False) -> list[int]:
        model_dir = self.root / model
        if not model_dir.is_dir():
            return []
        # Staging directories are hidden (.staging-*), so every v<N> here is complete.
        return sorted(int(m.group(1)) for p in model_dir.iterdir() if (m := VERSION_DIR.match(p.name)) and p.is_dir())

    def is_complete(self, model: str, version: int) -> bool:
        # Only a finished version is ever renamed to v<N>.
        return (self.root / model / f"v{version}").is_dir()

    def publish(self, model: str, source_dir: Path, metadata: dict[str, Any]) -> int:
        model_dir = self.root / model
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
        try:
            shutil.copytree(source_dir, staging, dirs_exist_ok=True)
            (staging / MANIFEST_FILE).unlink(missing_ok=True)
            while True:
                version = max(self.version_numbers(model), default=0) + 1
                record = {**metadata, "version": version, "created_at": utc_now()}
                (staging / METADATA_FILE).write_text(dumps(record))
                (staging / MANIFEST_FILE).write_text(dumps(build_manifest(staging, version)))
                _fsync_tree(staging)
                try:
                    os.rename(staging, model_dir / f"v{version}")
                    _fsync_dir(model_dir)
                    return version
                except OSError:
                    if not (model_dir / f"v{version}").exists():
                        raise
                    # Another writer took this number first; take the next one.
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def read_bytes(self, key: str) -> bytes | None:
        path = self.root / key
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def fetch_file(self, key: str, dest: Path) -> bool:
        source = self.root / key
        if not source.is_file():
            return False
        shutil.copyfile(source, dest)
        return True

    def version_files(self, model: str, version: int) -> list[str]:
        directory = self.root / model / f"v{version}"
        return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())

    def read_with_token(self, key: str) -> tuple[bytes | None, str | None]:
        data = self.read_bytes(key)
        return (None, None) if data is None else (data, _token(data))

    def write_if(self, key: str, data: bytes, token: str | None) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                current = self.read_bytes(key)
                if (None if current is None else _token(current)) != token:
                    return False
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                _fsync_dir(path.parent)
                return True
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def version_uri(self, model: str, version: int) -> str:
        return str(self.root / model / f"v{version}")

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.version_numbers(p.name))

    def model_dirs(self) -> list[str]:
        """Every model directory, including ones that hold only litter."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def litter(self, model: str) -> list[tuple[str, float]]:
        model_dir = self.root / model
        if not model_dir.is_dir():
            return []
        now = time.time()
        found = []
        for path in model_dir.iterdir():
            # Crashed publishes (.staging-*) and crashed alias writes (.aliases.json.*).
            if path.name.startswith(STAGING_PREFIX) or path.name.startswith(".aliases.json."):
                try:
                    found.append((path.name, now - _newest_mtime(path)))
                except FileNotFoundError:
                    continue  # finished or removed while we looked
        return sorted(found)

    def remove_litter(self, model: str, label: str) -> None:
        if not (label.startswith(STAGING_PREFIX) or label.startswith(".aliases.json.")):
            raise ValueError(f"not litter: {label}")
        path = self.root / model / label
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _newest_mtime(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")]
    return max(times)


def _fsync_tree(directory: Path) -> None:
    # Flush file contents before the rename publishes them, so a crash cannot expose empty files.
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
