"""The ingest pool's job; the pool itself (workers that die with the command) is `esi_tools.workers.pool`."""

from __future__ import annotations

from ..workers import die_with_parent, pool

__all__ = ["die_with_parent", "load_batch", "pool"]


def load_batch(tasks: list) -> list[list]:
    """Pool job: several tasks (records.Task) at once, fewer round trips for short records; records.Loaded out."""
    # imported here, not at the top, so that a new worker runs die_with_parent before numpy loads
    from .records import load_task

    return [load_task(task) for task in tasks]
