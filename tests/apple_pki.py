"""A test PKI shaped like Apple's, signing App Store data the way the App Store does.

Root CA → intermediate (OID 1.2.840.113635.100.6.2.1, like Apple WWDR) → leaf (OID
1.2.840.113635.100.6.11.1), all EC P-256; JWS in ES256 with the `x5c` header carrying
`[leaf, intermediate, root]`. The real `SignedDataVerifier` checks all of it.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
BUNDLE_ID = "com.example.tollhouse"
APP_APPLE_ID = 1234567890


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    path_length: int | None = None,
    apple_oid: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if apple_oid is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(apple_oid, b"\x05\x00"), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


class ApplePKI:
    def __init__(self, *, leaf_oid: bool = True) -> None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _certificate("Test Apple Root", root_key, None, ca=True)
        self.intermediate = _certificate(
            "Test WWDR", intermediate_key, (self.root, root_key), ca=True, path_length=0,
            apple_oid=INTERMEDIATE_OID,
        )  # fmt: skip
        self.leaf = _certificate(
            "Test App Store Signer", self.leaf_key, (self.intermediate, intermediate_key),
            ca=False, apple_oid=LEAF_OID if leaf_oid else None,
        )  # fmt: skip

    @property
    def root_base64(self) -> str:
        """The root as APPLE_ROOT_CERTIFICATES takes it (base64 DER)."""
        return _b64(self.root)

    def sign(self, payload: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None) -> str:
        x5c = [_b64(c) for c in (self.leaf, self.intermediate, self.root)]
        return jwt.encode(payload, key or self.leaf_key, algorithm="ES256", headers={"x5c": x5c})


def now_ms() -> int:
    return int(time.time() * 1000)


def transaction(
    product_id: str,
    transaction_id: str | None = None,
    *,
    original_transaction_id: str | None = None,
    bundle_id: str = BUNDLE_ID,
    environment: str = "Sandbox",
    purchase_ms: int | None = None,
    expires_ms: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A StoreKit 2 transaction payload (JWSTransactionDecodedPayload's fields)."""
    transaction_id = transaction_id or str(uuid.uuid4().int % 10**15)
    purchase_ms = purchase_ms or now_ms()
    payload: dict[str, Any] = {
        "transactionId": transaction_id,
        "originalTransactionId": original_transaction_id or transaction_id,
        "bundleId": bundle_id,
        "productId": product_id,
        "purchaseDate": purchase_ms,
        "originalPurchaseDate": purchase_ms,
        "signedDate": now_ms(),
        "quantity": 1,
        "type": "Consumable",
        "inAppOwnershipType": "PURCHASED",
        "environment": environment,
        "transactionReason": "PURCHASE",
        "storefront": "USA",
        "currency": "USD",
        "price": 4990,
    }
    if expires_ms is not None:
        payload.update(type="Auto-Renewable Subscription", expiresDate=expires_ms)
    payload.update(fields)
    return payload


def notification(
    notification_type: str,
    signed_transaction: str,
    *,
    notification_uuid: str | None = None,
    subtype: str | None = None,
    bundle_id: str = BUNDLE_ID,
    environment: str = "Sandbox",
) -> dict[str, Any]:
    """An App Store Server Notification V2 payload (ResponseBodyV2DecodedPayload)."""
    payload: dict[str, Any] = {
        "notificationType": notification_type,
        "notificationUUID": notification_uuid or str(uuid.uuid4()),
        "version": "2.0",
        "signedDate": now_ms(),
        "data": {
            "appAppleId": APP_APPLE_ID,
            "bundleId": bundle_id,
            "environment": environment,
            "signedTransactionInfo": signed_transaction,
            "status": 1,
        },
    }
    if subtype:
        payload["subtype"] = subtype
    return payload
