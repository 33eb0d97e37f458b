"""`tollhouse serve --workers N`: worker processes that really share the connections.

uvicorn's `--workers` shares one listening socket; whichever worker wakes first accepts,
and under keep-alive load one worker took 95 to 100 % of the connections in 4 of 6 rounds
(issue 14). Here each worker binds its own socket with SO_REUSEPORT and the kernel spreads
new connections across them by a hash of the client's address and port. The parent only
supervises: a worker that exits stops the others (a process manager restarts the service),
SIGINT/SIGTERM are passed on.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from multiprocessing.connection import wait
from typing import Any

APP = "tollhouse.app:create_app"


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind to the same address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    sock = reuse_port_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(APP, factory=True, **options))
    server.run(sockets=[sock])


def run(host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the app factory with `workers` processes (1: in this process)."""
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        import uvicorn

        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, options), name=f"worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    sentinels = {process.sentinel: process for process in processes}
    while sentinels:
        for ready in wait(list(sentinels)):
            ended = sentinels.pop(ready)  # type: ignore[arg-type]
            exit_code = exit_code or (ended.exitcode or 0)
            stop(signal.SIGTERM, None)
    sys.exit(exit_code)
