"""Reference proxies measured in the same run as Tollhouse, for scale (issue 14).

- `nginx_proxy`: nginx, one process (no master), a plain reverse proxy with keep-alive
  connections to the upstream — the floor a gateway is compared with. Skipped (None) when
  nginx is not installed (`apt-get install -y nginx`).
- `aiohttp_forwarder`: a bare Starlette app forwarding every GET with one shared aiohttp
  session (`reference_apps.forwarder`), under uvicorn with one worker — what Python plus the
  same client costs before any of Tollhouse's own work (auth, metering, rules).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

import auth
from reference_apps import UPSTREAM_ENV


@dataclass(frozen=True, slots=True)
class Reference:
    label: str
    base_url: str
    pid: int


# --- starting them ----------------------------------------------------------------------------


def wait_for(url: str, process: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
    """Until `url` answers 200; BenchError when `process` exits or does not start in time."""
    deadline = time.monotonic() + auth.STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise auth.BenchError(f"{name} exited:\n{auth._tail(log_path)}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise auth.BenchError(f"{name} did not start:\n{auth._tail(log_path)}")
        time.sleep(0.1)


@contextmanager
def _running(
    name: str, command: list[str], data_dir: Path, base_url: str, probe: str, env: dict[str, str]
) -> Iterator[Reference]:
    log_path = data_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            wait_for(base_url + probe, process, log_path, name)
            yield Reference(name, base_url, process.pid)
        finally:
            auth._stop(process)


@contextmanager
def aiohttp_forwarder(data_dir: Path, upstream_url: str, probe: str) -> Iterator[Reference]:
    port = auth._free_port()
    command = [
        sys.executable, "-m", "uvicorn", "reference_apps:forwarder",
        "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, UPSTREAM_ENV: upstream_url}
    base_url = f"http://127.0.0.1:{port}"
    with _running("Starlette + aiohttp", command, data_dir, base_url, probe, env) as reference:
        yield reference


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream bench {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def nginx_proxy(data_dir: Path, upstream_url: str, probe: str) -> Iterator[Reference | None]:
    executable = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if executable is None:
        yield None
        return
    port = auth._free_port()
    root = data_dir / "nginx"
    root.mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    upstream = upstream_url.removeprefix("http://")
    conf.write_text(NGINX_CONF.format(dir=root, upstream=upstream, port=port))
    command = [executable, "-p", str(root), "-c", str(conf), "-e", str(root / "stderr.log")]
    base_url = f"http://127.0.0.1:{port}"
    with _running("nginx", command, data_dir, base_url, probe, dict(os.environ)) as reference:
        yield reference
