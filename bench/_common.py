"""Shared by the benchmark scripts: where the real data is, the machine line, and a results table printer."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
ESI = str(Path(sys.executable).parent / "esi")


def esi(*args) -> Path:
    """Run an esi command in a subprocess; its stdout is the artifact path (its stderr tail on failure)."""
    out = subprocess.run([ESI, "-q", *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"esi {' '.join(map(str, args))} failed: {out.stderr[-2000:]}")
    return Path(out.stdout.strip())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(title: str, rows: list[dict]) -> str:
    """A Markdown section: the bench name, machine, date, then one row per figure."""
    columns = list(rows[0])
    lines = [f"## {title}", "", f"Machine: {machine()}; date: {date.today().isoformat()}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def peak_rss_mb(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command; return (seconds, peak memory in MB of its whole process tree, sampled every 20 ms).

    Memory is the sum of PSS (proportional set size): pages shared by forked workers count once, not per process.
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode:
        raise RuntimeError(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start, peak / 1e6
