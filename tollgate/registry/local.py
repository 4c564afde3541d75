"""Registry storage in a local directory.

A version is assembled in a hidden staging directory and made visible with one
``os.rename`` to ``v<N>``: rename is atomic on POSIX, and it fails if ``v<N>``
already exists, which also settles two writers racing for the same number.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tollgate.registry.base import METADATA_FILE, VERSION_DIR, Store, dumps, utc_now


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
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        try:
            shutil.copytree(source_dir, staging, dirs_exist_ok=True)
            while True:
                version = max(self.version_numbers(model), default=0) + 1
                record = {**metadata, "version": version, "created_at": utc_now()}
                (staging / METADATA_FILE).write_text(dumps(record))
                _fsync_tree(staging)
                try:
                    os.rename(staging, model_dir / f"v{version}")
                    return version
                except OSError:
                    if not (model_dir / f"v{version}").exists():
                        raise
                    # Another writer took this number first; take the next one.
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def read_json(self, key: str) -> dict[str, Any] | None:
        path = self.root / key
        return json.loads(path.read_text()) if path.is_file() else None

    def write_json_atomic(self, key: str, value: dict[str, Any]) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(dumps(value))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def download(self, model: str, version: int, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.root / model / f"v{version}", dest, dirs_exist_ok=True)
        return dest

    def version_uri(self, model: str, version: int) -> str:
        return str(self.root / model / f"v{version}")

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.version_numbers(p.name))


def _fsync_tree(directory: Path) -> None:
    # Flush file contents before the rename publishes them, so a crash cannot expose empty files.
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
