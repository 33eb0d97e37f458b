"""Identity's refusals, each with a stable code."""

from __future__ import annotations

import jwt

from tollhouse.kit.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized


def token_defect(exc: Exception) -> str:
    """What is wrong with a token, in words fit to show: a decoder's own message (`'utf-8'
    codec can't decode byte 0xb7`) says how we parse, not what the caller got wrong."""
    if isinstance(exc, jwt.DecodeError) and not isinstance(exc, jwt.InvalidSignatureError):
        return "malformed token"
    return str(exc)


class AuthenticationRequired(Unauthorized):
    code = "authentication_required"
    message = "Authentication required."


class InvalidToken(Unauthorized):
    code = "invalid_token"
    message = "Invalid access token."


class TokenExpired(Unauthorized):
    code = "token_expired"
    message = "Access token has expired."


class WrongTokenType(Unauthorized):
    code = "wrong_token_type"
    message = "Token is not an access token."


class UserInactive(Unauthorized):
    code = "user_not_found_or_inactive"
    message = "User not found or deactivated."


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    message = "The refresh token is not valid."


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    message = "This refresh token was already used; every session it belongs to is revoked."
    keeps_writes = True


class RefreshTokenExpired(Unauthorized):
    code = "refresh_token_expired"
    message = "The refresh token has expired; sign in again."
    keeps_writes = True


class UserNotFound(NotFound):
    code = "user_not_found"
    message = "User not found."


class UserDeactivated(Forbidden):
    code = "user_deactivated"
    message = "This user deactivated their account."


class InvalidServiceKey(Forbidden):
    code = "invalid_service_key"
    message = "Invalid service key."


class ServiceKeyRequired(Forbidden):
    code = "service_key_required"
    message = "This endpoint needs X-Service-Key (or a signed gateway request)."


class ServiceKeyNotConfigured(ServiceUnavailable):
    code = "service_key_not_configured"
    message = "FLASH_SERVICE_KEY not configured."


class InvalidGatewaySignature(Forbidden):
    code = "invalid_gateway_signature"
    message = "Invalid gateway signature."


class GatewaySignatureRequired(Forbidden):
    code = "gateway_signature_required"
    message = "Gateway signature required: this server refuses the plain service key."


class AdminDisabled(Forbidden):
    code = "admin_disabled"
    message = "Admin endpoints are disabled (ADMIN_API_KEY not set)."


class InvalidAdminKey(Forbidden):
    code = "invalid_admin_key"
    message = "Invalid admin key."


class AdminKeyRequired(Forbidden):
    code = "admin_key_required"
    message = "This endpoint needs X-Admin-Key."


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"
    message = "Invalid API key."


class SignInDisabled(ServiceUnavailable):
    code = "sign_in_disabled"
    message = "This sign-in method is not configured on this server."


class IssuerUnavailable(ServiceUnavailable):
    code = "issuer_unavailable"
    message = "The identity provider's signing keys could not be fetched."


class PublishableKeyMismatch(Forbidden):
    code = "publishable_key_mismatch"
    message = "This end-user token belongs to another project than the key it came with."


class SecretKeyRequired(Forbidden):
    code = "secret_key_required"
    message = (
        "This endpoint requires a secret key (Authorization: Bearer sk_…); "
        "a publishable key is not enough."
    )


class PlatformKeyRequired(Forbidden):
    code = "platform_key_required"
    message = "This endpoint takes a project's key (X-Publishable-Key or a secret key)."


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"
    message = "A console session cannot be used from another site's page."
