"""Worker processes that read records for ingest and never outlive the command that started them.

If `esi ingest -j N` is killed (SIGTERM, SIGKILL, a closed pipe), its workers must die too: they hold the
command's stdout, so `esi ingest … | esi features -` would otherwise wait for them for minutes. Linux's
PR_SET_PDEATHSIG kills a worker the moment its parent dies; a watchdog thread that polls the parent pid
covers other systems and the window before prctl takes effect.
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


def die_with_parent(parent: int) -> None:
    """Pool initializer: arrange for this worker to exit as soon as process `parent` is gone."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watchdog alone does the job
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def load_batch(tasks: list) -> list[list]:
    """Pool job: several tasks (records.Task) at once, fewer round trips for short records; records.Loaded out."""
    # imported here, not at the top, so that a new worker runs die_with_parent before numpy loads
    from .records import load_task

    return [load_task(task) for task in tasks]


def pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started with spawn (a forked child can inherit a lock held by one of polars' threads
    and hang forever), each tied to this process's life."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
