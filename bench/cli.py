"""How long the `tollhouse` command takes to answer, beside Python's own start-up.

Each command runs --runs times as a fresh process (the way an operator runs it); the median
wall time is printed beside two baselines measured in the same run: `python -c pass` (the
interpreter) and `python -c 'import fastapi'` (what importing the web stack alone costs).
Targets (issue 18): `--version` and `--help` under 0.5 s, a database command under 1.5 s.

The database command is `tollhouse users list --json` on an SQLite home of its own (made
and migrated before timing). Run `.venv/bin/python bench/cli.py [--runs 7] [--markdown]`.
Exit status 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
TOLLHOUSE = str(Path(sys.executable).with_name("tollhouse"))


def timed(command: list[str], env: dict[str, str], runs: int) -> float:
    """Median seconds of `runs` fresh runs (after one warm-up for the OS page cache)."""
    samples = []
    for run in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        if run:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TOLLHOUSE_HOME": scratch, "LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        subprocess.run([TOLLHOUSE, "migrate"], env=env, check=True, capture_output=True)
        rows: list[tuple[str, float, float | None]] = [
            ("python -c pass (baseline)", timed([PYTHON, "-c", "pass"], env, args.runs), None),
            (
                "python -c 'import fastapi' (baseline)",
                timed([PYTHON, "-c", "import fastapi"], env, args.runs),
                None,
            ),
            ("tollhouse --version", timed([TOLLHOUSE, "--version"], env, args.runs), 0.5),
            ("tollhouse --help", timed([TOLLHOUSE, "--help"], env, args.runs), 0.5),
            (
                "tollhouse users list --json (SQLite)",
                timed([TOLLHOUSE, "users", "list", "--json"], env, args.runs),
                1.5,
            ),
        ]
    ok = all(target is None or seconds < target for _, seconds, target in rows)
    if args.markdown:
        print("| command | median s | target | |\n| --- | ---: | ---: | --- |")
        for name, seconds, target in rows:
            verdict = "" if target is None else ("PASS" if seconds < target else "FAIL")
            limit = "" if target is None else f"< {target}"
            print(f"| `{name}` | {seconds:.3f} | {limit} | {verdict} |")
    else:
        for name, seconds, target in rows:
            verdict = "" if target is None else ("PASS" if seconds < target else "FAIL")
            print(f"{name:42} {seconds:7.3f} s  {verdict}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
