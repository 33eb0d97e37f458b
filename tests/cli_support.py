"""Running the real `tollhouse` executable in a subprocess, on a home of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOLLHOUSE = str(Path(sys.executable).with_name("tollhouse"))
# Settings a developer's shell (or CI) may carry that would leak into the command.
_INHERITED = ("DATABASE_URL", "TOLLHOUSE_ENV", "TOLLHOUSE_DATA_DIR", "REDIS_URL", "LOG_JSON")


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _INHERITED}
    env.update({"TOLLHOUSE_HOME": str(home), "LOG_LEVEL": "WARNING", **settings})
    return env


def tollhouse(
    *args: str, home: Path, cwd: Path | None = None, timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess[str]:
    """`tollhouse ARGS` with TOLLHOUSE_HOME=home, from `cwd` (default: the home's parent,
    where no `.env` lies)."""
    return subprocess.run(  # noqa: S603 - our own executable
        [TOLLHOUSE, *args],
        cwd=cwd or home.parent,
        env=cli_env(home, **settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
