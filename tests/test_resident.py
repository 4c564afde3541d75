"""A local run keeps the files its tasks loaded in memory (tollgate/resident.py).

The reclaim this guards against (a host dropping page cache no process maps) is not under a
test's control, so these tests pin the mechanism it relies on: the kernel's
``POSIX_FADV_DONTNEED`` drops a file's clean, unmapped pages and keeps mapped ones, which is
the same line DAMON's ``unmapped`` filter draws. bench/page_cache.py measures the effect.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_config, run_pipeline
from tollgate.resident import LOADED_FILES_DIR_ENV, ResidentFiles

ROOT = Path(__file__).resolve().parent.parent
# Only where the mechanism exists: elsewhere the runner does nothing, which the last test covers.
needs_linux = pytest.mark.skipif(not ResidentFiles.supported(),
                                 reason="needs Linux 5.14+ (/proc/self/maps, MADV_POPULATE_READ)")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
MIB = 2**20


def resident_pages(path: Path) -> int:
    """How many of ``path``'s pages are in the page cache (mincore on a private mapping of it)."""
    size = path.stat().st_size
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) as mapping:
        anchor = ctypes.c_char.from_buffer(mapping)
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vector = ctypes.create_string_buffer(pages)
            assert _libc.mincore(ctypes.addressof(anchor), size, vector) == 0, ctypes.get_errno()
            return sum(byte & 1 for byte in vector.raw[:pages])
        finally:
            del anchor


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to drop ``path``'s clean pages that no process maps."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def mapped_rss_kib(path: Path) -> int | None:
    """This process's resident KiB of its mapping of ``path`` (/proc/self/smaps), None if unmapped."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.endswith(str(path)):
            for detail in lines[index + 1:]:
                if detail.startswith("Rss:"):
                    return int(detail.split()[1])
    return None


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def two_files(tmp_path):
    """Two 1 MiB files on disk, written through and out of the page cache.

    In ``tmp_path``, or in the checkout's build/ where ``tmp_path`` is a tmpfs (its pages are
    memory, not cache the kernel can drop)."""
    for directory in (tmp_path, ROOT / "build" / f"test-resident-{os.getpid()}"):
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in ("read-by-a-task.bin", "never-read.bin"):
            path = directory / name
            with open(path, "wb") as handle:
                handle.write(os.urandom(MIB))
                handle.flush()
                os.fsync(handle.fileno())
            drop_from_page_cache(path)
            paths.append(path)
        if not any(resident_pages(path) for path in paths):
            yield paths
            if directory != tmp_path:
                shutil.rmtree(directory)
            return
        if directory != tmp_path:
            shutil.rmtree(directory)
    pytest.skip(f"neither {tmp_path} nor the checkout's build/ lets the kernel drop a file's cached pages")


@needs_linux
def test_only_pages_in_the_page_cache_are_held_and_held_pages_survive_a_drop(two_files, tmp_path):
    read_file, never_read = two_files
    read_file.read_bytes()
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "4242.txt").write_text("\n".join([str(read_file), str(never_read), str(tmp_path / "no-such.pyc"),
                                               str(tmp_path), "/proc/self/status"]))
    pages = MIB // mmap.PAGESIZE

    with ResidentFiles(lists, interval=0.02, rescan=0.05) as keeper:
        assert os.environ[LOADED_FILES_DIR_ENV] == str(lists)
        assert wait_for(lambda: mapped_rss_kib(read_file) == MIB // 1024), mapped_rss_kib(read_file)
        # Mapped, but nothing of it read in: the keeper never reads from disk what no task read.
        assert mapped_rss_kib(never_read) == 0 and resident_pages(never_read) == 0
        drop_from_page_cache(read_file)
        assert resident_pages(read_file) == pages  # held pages stay
        # A later task reads the other file: the next rescan holds it too.
        never_read.read_bytes()
        assert wait_for(lambda: mapped_rss_kib(never_read) == MIB // 1024)
        assert keeper.bytes_held == 2 * MIB

    assert mapped_rss_kib(read_file) is None and mapped_rss_kib(never_read) is None
    assert LOADED_FILES_DIR_ENV not in os.environ and not lists.exists()
    drop_from_page_cache(read_file)
    assert resident_pages(read_file) == 0  # released: the same drop now takes it


@needs_linux
def test_a_task_process_lists_its_bytecode_and_libraries_at_exit(tmp_path):
    code = ("import _decimal, json, numpy, tollgate\n"
            "print(json.dumps({'json': json.__cached__, 'extension': _decimal.__file__}))")
    env = {**os.environ, "_KFP_RUNTIME": "true", LOADED_FILES_DIR_ENV: str(tmp_path)}
    finished = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                              check=True)
    expected = json.loads(finished.stdout)
    [listing] = list(tmp_path.iterdir())
    assert listing.suffix == ".txt"  # written under a temporary name, then renamed
    listed = set(listing.read_text().splitlines())
    assert {expected["json"], expected["extension"]} <= listed
    assert any(".so" in path and "numpy" in path and "libs" in path for path in listed)  # mapped, not imported

    # Outside a KFP task (no _KFP_RUNTIME) nothing is listed, whatever the environment says.
    listing.unlink()
    subprocess.run([sys.executable, "-c", code], env={**env, "_KFP_RUNTIME": "false"}, cwd=ROOT, check=True,
                   capture_output=True)
    assert list(tmp_path.iterdir()) == []


@needs_linux
def test_a_local_run_holds_what_its_tasks_loaded_and_lets_go_after(trained_run_record):
    assert trained_run_record["resident_bytes"] > 50 * MIB  # pandas, pyarrow, scikit-learn at least
    assert trained_run_record["loaded_files_left"] is False


def test_a_run_with_the_setting_off_holds_nothing(tmp_path):
    config = make_config(tmp_path, **{"data.source": str(tmp_path / "missing.csv"),
                                      "run.keep_loaded_files_resident": False})
    outcome, _ = run_pipeline(config)
    assert not outcome.succeeded and outcome.resident_bytes == 0
    assert not (outcome.run_dir / "loaded-files").exists()
