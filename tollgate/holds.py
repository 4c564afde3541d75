"""Barriers that let tests stop a real process at the one moment a race is decided.

A test sets an environment variable to the path of a file it has created; the process,
on reaching the named point, announces itself and waits while that file exists (bounded).
Unset in normal use, so each hook costs one ``os.environ`` lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_SECONDS = 300


def hold_while_file_exists(env_name: str, seconds: float = HOLD_SECONDS) -> None:
    """Wait while ``$env_name`` names an existing file, at most ``seconds``.

    On arrival the process touches ``<file>.reached`` (one waiter) and ``<file>.reached-<pid>``
    (so a test holding several processes can count them) before it starts waiting.
    """
    hold = os.environ.get(env_name)
    if not hold:
        return
    Path(f"{hold}.reached-{os.getpid()}").touch()
    Path(f"{hold}.reached").touch()
    deadline = time.monotonic() + seconds
    while Path(hold).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
