"""A local identity provider: serves a JWKS over HTTP and signs tokens with its keys."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    def jwk(self) -> dict[str, Any]:
        algorithm: Any = (
            jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        )
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(kid: str, alg: str = "RS256") -> SigningKey:
    private: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return SigningKey(kid, alg, private)


@dataclass
class JwksServer:
    """Publishes `keys` at /jwks.json; `hits` counts fetches (to prove caching)."""

    keys: list[SigningKey] = field(default_factory=list)
    hits: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps({"keys": [key.jwk() for key in owner.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def sign(self, key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, key.private, algorithm=key.alg, headers={"kid": key.kid, **header}
        )


def claims(issuer: str, audience: str, subject: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + 600, **extra}
