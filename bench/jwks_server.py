"""A stand-in external identity provider: a local JWKS endpoint plus an RS256 token signer.

The benchmark needs a JWKS path that costs what a real one costs on the server (key lookup,
RS256 verification, user lookup) without depending on the network, so the keys are served
from a thread in the benchmark process on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

JWKS_PATH = "/jwks.json"


class _JwksHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _JwksHandler)
        self.body = body
        self.fetches = 0
        self.fetch_lock = threading.Lock()


class _JwksHandler(BaseHTTPRequestHandler):
    server: _JwksHttpServer

    def do_GET(self) -> None:
        if self.path != JWKS_PATH:
            self.send_error(404)
            return
        with self.server.fetch_lock:
            self.server.fetches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: one stderr line per fetch would garble the benchmark's table."""


class LocalIssuer:
    """Signs tokens as `issuer` for `audience` with one RSA key, published under `kid`."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        kid: str,
        private_key: rsa.RSAPrivateKey,
        server: _JwksHttpServer,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self._private_key = private_key
        self._server = server

    @property
    def jwks_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{JWKS_PATH}"

    @property
    def fetches(self) -> int:
        """How often the server under test fetched the key set (expected: once per cache life)."""
        return self._server.fetches

    def token(self, subject: str, lifetime_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime_seconds,
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})


def _jwks_body(public_key: rsa.RSAPublicKey, kid: str) -> bytes:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public_key))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": [jwk]}).encode()


@contextmanager
def running_issuer(issuer: str, audience: str, kid: str) -> Iterator[LocalIssuer]:
    """Serve the key set on 127.0.0.1 (a free port) for as long as the block runs."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _JwksHttpServer(_jwks_body(private_key.public_key(), kid))
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    try:
        yield LocalIssuer(issuer, audience, kid, private_key, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
