"""CSRF protection for every form and the Content-Security-Policy of every page.

CSRF: a signed double submit. The browser holds a random value in an HttpOnly cookie; forms
carry HMAC(key, value) in a hidden field. A cross-site page can make the browser send the
cookie but can neither read it nor compute the field, and a cookie planted by a sibling
subdomain fails too (it cannot be signed without the server's key).

CSP: no inline script or style anywhere; scripts, styles and images from this origin only;
forms post here, or to origins a page names (a hosted page's redirect after sign-in, which
Chrome checks against `form-action`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

from fastapi import Request, Response

from tollhouse.kit.errors import Forbidden
from tollhouse.web.cookies import derived_key, set_cookie

CSRF_COOKIE = "tollhouse_csrf"
CSRF_FIELD = "csrf_token"
CSRF_COOKIE_SECONDS = 12 * 3600


class CsrfRefused(Forbidden):
    code = "csrf_failed"
    message = "This form has expired or did not come from this site. Reload the page and try again."


def _signature(request: Request, value: str) -> str:
    return hmac.new(derived_key(request, "csrf"), value.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token for this browser's forms; creates the cookie value on first use (remembered on
    the request so `apply_csrf_cookie` can set it on the response)."""
    value = getattr(request.state, "csrf_new", None) or request.cookies.get(CSRF_COOKIE)
    if not value or len(value) > 128:
        value = secrets.token_urlsafe(32)
        request.state.csrf_new = value
    return _signature(request, value)


def apply_csrf_cookie(request: Request, response: Response) -> None:
    new = getattr(request.state, "csrf_new", None)
    if new:
        set_cookie(request, response, CSRF_COOKIE, new, CSRF_COOKIE_SECONDS)


def check_csrf(request: Request, form: Mapping[str, object]) -> None:
    """CsrfRefused (403) unless the form's token signs this browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    given = form.get(CSRF_FIELD)
    if not cookie or not isinstance(given, str) or len(cookie) > 128:
        raise CsrfRefused()
    if not hmac.compare_digest(given.encode(), _signature(request, cookie).encode()):
        raise CsrfRefused()


def content_security_policy(form_action: Iterable[str] = ()) -> str:
    targets = " ".join(["'self'", *sorted(set(form_action))])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            f"form-action {targets}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
