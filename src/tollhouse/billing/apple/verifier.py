"""App Store signed data, verified by Apple's own `SignedDataVerifier`.

The verifier checks the JWS's x5c chain (leaf → Apple WWDR intermediate → a trusted root, with
Apple's certificate OIDs), the ES256 signature, the bundle id and the environment. It is
blocking (X.509, and OCSP over the network when online checks are on), so it runs in a worker
thread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from appstoreserverlibrary.models.ResponseBodyV2DecodedPayload import (
    ResponseBodyV2DecodedPayload,
)
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tollhouse.billing.apple.errors import (
    AppleSignatureInvalid,
    AppleVerificationUnavailable,
    AppleWrongApp,
    AppleWrongEnvironment,
)
from tollhouse.config import ConfigError, Settings
from tollhouse.kit.errors import TollhouseError

T = TypeVar("T")

# Data from these environments is not signed by Apple; the library accepts it unchecked.
UNSIGNED_ENVIRONMENTS = (Environment.XCODE, Environment.LOCAL_TESTING)

_REFUSALS: dict[VerificationStatus, type[TollhouseError]] = {
    VerificationStatus.INVALID_APP_IDENTIFIER: AppleWrongApp,
    VerificationStatus.INVALID_ENVIRONMENT: AppleWrongEnvironment,
    VerificationStatus.RETRYABLE_VERIFICATION_FAILURE: AppleVerificationUnavailable,
}


class AppleVerifier:
    def __init__(self, verifier: SignedDataVerifier, environment: Environment) -> None:
        self._verifier = verifier
        self.environment = environment

    @classmethod
    def from_settings(cls, settings: Settings) -> AppleVerifier | None:
        """None when Apple is not configured (no bundle id or no roots)."""
        if not settings.apple_bundle_id or not settings.apple_root_certificates:
            return None
        environment = Environment(settings.apple_environment)
        if settings.is_production and environment in UNSIGNED_ENVIRONMENTS:
            raise ConfigError(f"APPLE_ENVIRONMENT={environment.value} is refused in production")
        if environment is Environment.PRODUCTION and settings.apple_app_id is None:
            raise ConfigError("APPLE_APP_ID is required when APPLE_ENVIRONMENT=Production")
        verifier = SignedDataVerifier(
            load_root_certificates(settings.apple_root_certificates),
            enable_online_checks=settings.apple_online_checks,
            environment=environment,
            bundle_id=settings.apple_bundle_id,
            app_apple_id=settings.apple_app_id,
        )
        return cls(verifier, environment)

    async def transaction(self, signed_transaction: str) -> JWSTransactionDecodedPayload:
        return await _off_loop(
            self._verifier.verify_and_decode_signed_transaction, signed_transaction
        )

    async def notification(self, signed_payload: str) -> ResponseBodyV2DecodedPayload:
        return await _off_loop(self._verifier.verify_and_decode_notification, signed_payload)


async def _off_loop(verify: Callable[[str], T], signed: str) -> T:
    try:
        return await anyio.to_thread.run_sync(verify, signed)
    except VerificationException as exc:
        raise _REFUSALS.get(exc.status, AppleSignatureInvalid)() from None
    except (ValueError, TypeError, KeyError) as exc:
        # The payload verified but does not have the shape of the model (cattrs refuses it).
        raise AppleSignatureInvalid(detail={"reason": type(exc).__name__}) from None


def load_root_certificates(entries: list[str]) -> list[bytes]:
    """Each entry a file (DER or PEM) or base64 DER; every one must parse as a certificate."""
    roots = [_load_certificate(entry.strip()) for entry in entries if entry.strip()]
    if not roots:
        raise ConfigError("APPLE_ROOT_CERTIFICATES names no certificate")
    return roots


def _load_certificate(entry: str) -> bytes:
    try:
        data = _read_file(entry) or base64.b64decode(entry, validate=True)
    except (OSError, binascii.Error) as exc:
        raise ConfigError(
            f"APPLE_ROOT_CERTIFICATES: {entry[:40]!r} is neither a file nor base64 DER"
        ) from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"APPLE_ROOT_CERTIFICATES: {entry[:40]!r} is not a certificate") from exc
    return data


def _read_file(entry: str) -> bytes | None:
    path = Path(entry)
    try:
        is_file = path.is_file()
    except OSError:  # a base64 string too long to be a file name
        return None
    return path.read_bytes() if is_file else None
