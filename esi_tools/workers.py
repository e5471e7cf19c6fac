"""Worker pools that never outlive the command that started them (every `-j N` command uses `pool`).

If a command with workers is killed (SIGTERM, SIGKILL, a closed pipe), its workers must die too: they hold
the command's stdout, so `esi ingest … | esi features -` would otherwise wait for them for minutes. Linux's
PR_SET_PDEATHSIG kills a worker the moment its parent dies; a watchdog thread that polls the parent pid
covers other systems and the window before prctl takes effect. With the workers gone, multiprocessing's
resource tracker sees its pipe close and exits too. This module imports nothing heavy: a spawned worker
runs `die_with_parent` before numpy or torch load.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_SECONDS = 0.5  # how often a worker checks that its parent is alive


def parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have Linux send `sig` to this process when its parent dies (elsewhere: nothing). Also usable as a
    subprocess `preexec_fn`, for a child that is not a Python worker (the local model server)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):  # not Linux: callers keep a watchdog of their own
        pass


def die_with_parent(parent: int) -> None:
    """Pool initializer: arrange for this worker to exit as soon as process `parent` is gone."""
    parent_death_signal()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started with spawn (a forked child can inherit a lock held by one of polars' threads
    and hang forever), each tied to this process's life."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
