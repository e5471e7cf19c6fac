"""Run every bench/bench_*.py in turn and collect their Markdown tables into bench/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import machine

HERE = Path(__file__).resolve().parent


def main(selected: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if selected:
        scripts = [s for s in scripts if any(name in s.stem for name in selected)]
    sections, failures = [], []
    for script in scripts:
        print(f"== {script.name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent)
        took = time.perf_counter() - start
        if proc.returncode:
            failures.append(script.name)
            sections.append(f"## {script.name}\n\nFAILED after {took:.0f} s:\n\n```\n{proc.stderr[-3000:]}\n```\n")
        else:
            sections.append(proc.stdout.strip() + f"\n\n_{script.name}: {took:.0f} s_\n")
        print(sections[-1])
    header = (f"# Benchmark results\n\nWritten by `just bench` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
              f"machine: {machine()}. Each figure is measured side by side with its baseline in the same run.\n")
    (HERE / "RESULTS.md").write_text(header + "\n" + "\n".join(sections))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
