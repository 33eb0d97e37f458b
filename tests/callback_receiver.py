"""An HTTPS server that records the callbacks it receives (a pytest plugin: its fixtures
`tls_files`, `receiver` are registered for every module by conftest.py).

The certificate is self-signed for 127.0.0.1 and localhost; trust it with
`ssl.create_default_context(cafile=tls_files[0])`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support import in_thread

SLOW = -1  # a scripted "status" that answers 200 only after the client has timed out
HELD = -2  # a scripted "status": the request is never answered (held until the client goes)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The callback receiver: records every request and answers from a script (then 200)."""

    port: int = 0
    script: list[int] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    # Requests answered with a 2xx: the deliveries the caller was told succeeded.
    delivered: int = 0

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"https://{host}:{self.port}{path}"

    def reset(self, *script: int) -> None:
        self.script = list(script)
        self.seen = []
        self.delivered = 0

    async def handle(self, request: Request) -> Response:
        self.seen.append(Seen(request.url.path, dict(request.headers), await request.body()))
        status = self.script.pop(0) if self.script else 200
        if status == SLOW:
            await asyncio.sleep(2)  # 20 times the tests' timeout: late however slow the machine
            status = 200
        if status == HELD:
            for _ in range(600):  # bounded: 30 s
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return Response(status_code=503)
        if 200 <= status < 300:
            self.delivered += 1
        headers = {"Location": "https://example.com/"} if 300 <= status < 400 else None
        return Response(status_code=status, headers=headers)


def self_signed(directory: Path, names: list[x509.GeneralName] | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and key (PEM files) valid for `names` (default: localhost
    and 127.0.0.1)."""
    names = names or [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tollhouse-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def receiver_server(tls_files: tuple[Path, Path]) -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["GET", "POST"])])
    certfile, keyfile = tls_files
    with in_thread(
        app, "the HTTPS callback receiver", ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)
    ) as url:
        receiver.port = int(url.rsplit(":", 1)[1])
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server
