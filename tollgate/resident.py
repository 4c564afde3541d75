"""Keep the files a local run's tasks load in memory for as long as the run lasts.

Every task of a local run is a fresh Python process that imports pandas, pyarrow, scikit-learn,
scipy and onnxruntime again: about 2 CPU s for a train task, and the bytes come from the page
cache. Some hosts reclaim page cache that no process maps and nobody read for a while. The VM
this project is developed on runs DAMON with a ``pageout`` scheme for unmapped file pages idle
for about a minute, on a disk that serves those small reads at a few MB/s: a train task that
started a minute after the previous import spent 4.3 s importing instead of 2 s
(docs/benchmarks.md, "Session 12: library files kept resident"). A plain script imports once
and keeps its libraries mapped, so it never pays this; a process per task pays it whenever a
task starts after such an idle spell.

:class:`ResidentFiles` closes that gap without reading anything the tasks did not: each task
process lists, at exit, the files it loaded (modules' bytecode and every file it had mapped:
extension modules and shared libraries), and the runner maps those files and maps in the
pages of them that are in the page cache. A page some process maps is not "unmapped" page
cache, so such reclaim leaves it alone; under real memory pressure the kernel can still drop
it, as it can any clean file page (this is not ``mlock``). When the run ends the mappings go.

On a host without such reclaim the pages would have stayed cached anyway and this changes
nothing but the runner's RSS, which now counts them. Linux 5.14+ only (``/proc/self/maps``,
``mincore``, ``MADV_POPULATE_READ`` from Linux 5.14); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import os
import re
import stat
import sys
import threading
from pathlib import Path

# Set by the local runner for its tasks: the directory each task process writes its list to.
LOADED_FILES_DIR_ENV = "TOLLGATE_LOADED_FILES_DIR"
_MADV_POPULATE_READ = 22  # Linux 5.14 (include/uapi/asm-generic/mman-common.h); Python 3.11's mmap lacks it
_PAGE = mmap.PAGESIZE
_LOW_BIT = bytes(value & 1 for value in range(256))  # mincore: bit 0 of each byte = resident
_RUN_OF_PAGES = re.compile(b"\x01+")


def loaded_files() -> list[str]:
    """The files this process has loaded: each module's bytecode (its source or extension module
    when it has none) and every file it maps (shared libraries).

    No system call per module: this runs at every task's exit, on the DAG's critical path, so a
    path that does not exist (bytecode never written) is left for the runner to skip.
    """
    paths: set[str] = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__cached__", None) or getattr(module, "__file__", None)
        if isinstance(path, str):
            paths.add(path)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.rstrip("\n").split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/") and not fields[5].endswith(" (deleted)"):
                    paths.add(fields[5])
    except OSError:  # not Linux
        pass
    return sorted(paths)


def record_loaded_files() -> None:
    """Write :func:`loaded_files` to the runner's directory, if this process is a local run's task.

    Called at exit (``tollgate/__init__.py``); writes to a temporary name and renames, so the
    runner never reads half a list.
    """
    directory = os.environ.get(LOADED_FILES_DIR_ENV)
    if not directory or not os.path.isdir(directory):
        return
    target = os.path.join(directory, f"{os.getpid()}.txt")
    try:
        with open(target + ".tmp", "w") as listing:
            listing.write("\n".join(loaded_files()))
        os.replace(target + ".tmp", target)
    except OSError:  # the run is over and its directory gone: nothing to keep
        pass


class _Libc:
    """mmap, munmap, mincore and madvise through ctypes: Python's mmap module has no mincore
    and, in 3.11, no MADV_POPULATE_READ, and no kept library offers these for page cache."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.mincore = libc.mincore
        self.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        self.madvise = libc.madvise
        self.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class _MappedFile:
    """One file mapped read-only, and which of its pages this process has mapped in."""

    def __init__(self, address: int, length: int):
        self.address, self.length = address, length
        self.pages = (length + _PAGE - 1) // _PAGE
        self.held = bytearray(self.pages)  # 1 where the page is mapped in here


class ResidentFiles:
    """While entered, keep the page-cache-resident pages of every file the tasks listed mapped.

    ``directory`` is where tasks write their lists (it is created, and handed to the tasks
    through the environment). A daemon thread reads new lists every ``interval`` seconds and,
    every ``rescan`` seconds, looks again for pages of the files it holds that came into the
    page cache since (another task read them). ``bytes_held`` is how much it mapped in over the
    run (pages are held until the end, so that is also the most it held at once). With
    ``enabled`` false, or where :meth:`supported` is false, entering it does nothing.
    """

    def __init__(self, directory: Path, interval: float = 1.0, rescan: float = 5.0, enabled: bool = True):
        self.directory = Path(directory)
        self.interval, self.rescan = interval, rescan
        self.enabled = enabled
        self.files: dict[str, _MappedFile] = {}
        self.bytes_held = 0
        self._listed: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_env: str | None = None
        self._libc: _Libc | None = None

    @staticmethod
    @functools.cache
    def supported() -> bool:
        """Linux with ``/proc/self/maps`` and ``MADV_POPULATE_READ`` (5.14), tried on one page."""
        if sys.platform != "linux" or not os.path.exists("/proc/self/maps"):
            return False
        with mmap.mmap(-1, _PAGE) as page:
            anchor = ctypes.c_char.from_buffer(page)
            try:
                return _Libc().madvise(ctypes.addressof(anchor), _PAGE, _MADV_POPULATE_READ) == 0
            finally:
                del anchor

    def __enter__(self) -> ResidentFiles:
        if not (self.enabled and self.supported()):
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self._libc = _Libc()
        self._saved_env = os.environ.get(LOADED_FILES_DIR_ENV)
        os.environ[LOADED_FILES_DIR_ENV] = str(self.directory)
        self._thread = threading.Thread(target=self._keep, name="tollgate-resident-files", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        if self._saved_env is None:
            os.environ.pop(LOADED_FILES_DIR_ENV, None)
        else:
            os.environ[LOADED_FILES_DIR_ENV] = self._saved_env
        assert self._libc is not None
        for mapped in self.files.values():
            self._libc.munmap(mapped.address, mapped.length)
        self.files.clear()
        for listing in self.directory.glob("*.txt*"):
            listing.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def _keep(self) -> None:
        since_rescan = 0.0
        while not self._stop.wait(self.interval):
            self.hold_listed()
            since_rescan += self.interval
            if since_rescan >= self.rescan:
                since_rescan = 0.0
                for mapped in list(self.files.values()):
                    self._map_in_resident(mapped)

    def hold_listed(self) -> None:
        """Read the lists tasks wrote since the last call and map in their files' resident pages."""
        for listing in sorted(self.directory.glob("*.txt")):
            if listing.name in self._listed:
                continue
            self._listed.add(listing.name)
            try:
                paths = listing.read_text().splitlines()
            except OSError:
                continue
            for path in paths:
                mapped = self.files.get(path) or self._map(path)
                if mapped is not None:
                    self._map_in_resident(mapped)

    def _map(self, path: str) -> _MappedFile | None:
        assert self._libc is not None
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # bytecode that was never written, a file removed since
            return None
        try:
            status = os.fstat(descriptor)
            length = status.st_size
            if not stat.S_ISREG(status.st_mode) or length == 0:
                return None
            address = self._libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
        finally:
            os.close(descriptor)
        if address is None or address == ctypes.c_void_p(-1).value:
            return None
        mapped = self.files[path] = _MappedFile(address, length)
        return mapped

    def _map_in_resident(self, mapped: _MappedFile) -> None:
        """Map in (MADV_POPULATE_READ) each run of pages that is in the page cache and not yet held.

        Only resident pages: this never reads from disk what no task read.
        """
        assert self._libc is not None
        if 0 not in mapped.held:
            return
        vector = ctypes.create_string_buffer(mapped.pages)
        if self._libc.mincore(mapped.address, mapped.length, vector) != 0:
            return
        resident = vector.raw[:mapped.pages].translate(_LOW_BIT)  # one byte per page: 1 = in the page cache
        wanted = (int.from_bytes(resident, "big") & ~int.from_bytes(mapped.held, "big")).to_bytes(mapped.pages, "big")
        for run in _RUN_OF_PAGES.finditer(wanted):
            self._populate(mapped, run.start(), run.end())

    def _populate(self, mapped: _MappedFile, first: int, end: int) -> None:
        assert self._libc is not None
        offset = first * _PAGE
        length = min(end * _PAGE, mapped.length) - offset
        if self._libc.madvise(mapped.address + offset, length, _MADV_POPULATE_READ) != 0:
            return  # EFAULT: the file shrank under us; leave those pages alone
        mapped.held[first:end] = b"\x01" * (end - first)
        self.bytes_held += length
