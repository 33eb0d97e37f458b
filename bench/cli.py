"""How long the `tollhouse` command takes to answer, beside Python's own start-up.

Each command runs --runs times as a fresh process (the way an operator runs it), after one
warm-up run; the median wall and CPU seconds are printed beside baselines measured in the same
run: `python -c pass` (the interpreter), `import sqlalchemy.ext.asyncio, sqlalchemy.orm` (what
any database command must load) and `import fastapi` (the web stack a command must not load).
Targets (issue 18): `--version` and `--help` under 0.5 s, a database command under 1.5 s, each
judged on its median wall time (PASS or FAIL, and the exit status) and, for a shared machine,
also against its median CPU time (user + sys of the process, which excludes waiting for a
core).

The database command is `tollhouse users list --json` on an SQLite home of its own (made
and migrated before timing). Modules load from their bytecode caches, as they do for any
operator (`make` compiles them; the Containerfile too); one more row, without a target, times
the same command with every module compiled from source (PYTHONDONTWRITEBYTECODE=1 and no
caches), what a machine that can keep no bytecode pays.

Run `.venv/bin/python bench/cli.py [--runs 7] [--markdown]`. The load average is printed at
the start and the end; figures taken above 1.5 are marked "under load". Exit status 0 when
every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
TOLLHOUSE = str(Path(sys.executable).with_name("tollhouse"))
BUSY_LOAD = 1.5


@dataclass(frozen=True)
class Row:
    name: str
    wall: float
    cpu: float
    target: float | None = None
    note: str = "baseline"

    @property
    def verdict(self) -> str:
        """The target judged on wall time: what the operator waits for."""
        if self.target is None:
            return self.note
        return "PASS" if self.wall < self.target else "FAIL"

    @property
    def cpu_verdict(self) -> str:
        """The same target against CPU time: on a shared machine, wall time also counts the
        wait for a free core, CPU time only what the command itself costs."""
        if self.target is None:
            return ""
        return "PASS" if self.cpu < self.target else "FAIL"


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + sys, from the kernel's accounting of the child) seconds."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}: {stderr}")
    if process.stderr:
        process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    runs: int,
    target: float | None = None,
    note: str = "baseline",
) -> Row:
    run_once(command, env)  # warm-up: the OS page cache, and bytecode caches where missing
    samples = [run_once(command, env) for _ in range(runs)]
    return Row(
        name,
        statistics.median(wall for wall, _ in samples),
        statistics.median(cpu for _, cpu in samples),
        target,
        note,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TOLLHOUSE_HOME": scratch, "LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        # Python writes bytecode caches unless told not to; a bench told not to would time
        # the compiler on every run, which no operator's second call pays.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONPYCACHEPREFIX", None)
        cold = {
            **env,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": str(Path(scratch) / "no-bytecode"),
        }
        subprocess.run([TOLLHOUSE, "migrate"], env=env, check=True, capture_output=True)
        users = [TOLLHOUSE, "users", "list", "--json"]
        rows = [
            measure("python -c pass", [PYTHON, "-c", "pass"], env, args.runs),
            measure(
                "python -c 'import sqlalchemy.ext.asyncio, sqlalchemy.orm'",
                [PYTHON, "-c", "import sqlalchemy.ext.asyncio, sqlalchemy.orm"],
                env,
                args.runs,
            ),
            measure("python -c 'import fastapi'", [PYTHON, "-c", "import fastapi"], env, args.runs),
            measure("tollhouse --version", [TOLLHOUSE, "--version"], env, args.runs, 0.5),
            measure("tollhouse --help", [TOLLHOUSE, "--help"], env, args.runs, 0.5),
            measure("tollhouse users list --json (SQLite)", users, env, args.runs, 1.5),
            measure(
                "same, every module compiled from source", users, cold, args.runs, note="no target"
            ),
        ]
    load_after = os.getloadavg()[0]
    under_load = max(load_before, load_after) > BUSY_LOAD
    if args.markdown:
        print("| command | median wall s | median CPU s | target | wall | CPU |")
        print("| --- | ---: | ---: | ---: | --- | --- |")
        for row in rows:
            limit = "" if row.target is None else f"< {row.target}"
            print(
                f"| `{row.name}` | {row.wall:.3f} | {row.cpu:.3f} | {limit} | {row.verdict} "
                f"| {row.cpu_verdict} |"
            )
    else:
        print(f"{'command':58} {'wall s':>7} {'cpu s':>7}  wall  CPU")
        for row in rows:
            print(
                f"{row.name:58} {row.wall:7.3f} {row.cpu:7.3f}  {row.verdict:4}  {row.cpu_verdict}"
            )
    print(
        f"load average {load_before:.2f} at the start, {load_after:.2f} at the end, on "
        f"{os.cpu_count()} cores; {args.runs} runs each"
        + (" (under load: figures inflated)" if under_load else "")
    )
    return 0 if all(row.verdict != "FAIL" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
