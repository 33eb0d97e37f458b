"""The load balancer and the replicas agree on who closes an idle connection: nginx, before
the replica would. Otherwise a request nginx sends on a connection the replica is closing
fails with a 502, and a POST (a spend) is not retried on another replica."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from support import free_port
from tollhouse import cluster
from tollhouse.cli import app as cli
from tollhouse.commands.server import KEEP_ALIVE_SECONDS

ROOT = Path(__file__).resolve().parents[1]


def _upstream_keepalive_seconds(conf: str) -> int:
    upstream = conf[conf.index("upstream tollhouse") :]
    upstream = upstream[: upstream.index("}")]
    [seconds] = re.findall(r"keepalive_timeout (\d+)s;", upstream)
    return int(seconds)


@pytest.mark.parametrize("where", ["make cluster", "deploy/nginx.conf"])
def test_nginx_closes_idle_upstream_connections_before_a_replica_does(
    where: str, tmp_path: Path
) -> None:
    conf = (
        cluster.nginx_conf(tmp_path, "127.0.0.1", 8080, [8101, 8102])
        if where == "make cluster"
        else (ROOT / "deploy" / "nginx.conf").read_text()
    )
    assert _upstream_keepalive_seconds(conf) < KEEP_ALIVE_SECONDS


def test_serve_keeps_idle_connections_open_for_keep_alive_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("TOLLHOUSE_ROLE", "all")  # serve sets it for uvicorn: restored after

    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])

    assert result.exit_code == 0, result.output
    assert ran["timeout_keep_alive"] == KEEP_ALIVE_SECONDS
