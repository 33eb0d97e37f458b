"""Pages for people: server-rendered templates over the same services as the JSON APIs.

`templating` renders a page (CSP, CSRF token, base layout); `security` holds the CSRF check
and the Content-Security-Policy; `cookies` the cookie rules and signed cookie values;
`forms` parses a posted form into a Pydantic model after the CSRF check. Areas: `hosted/`
(end users of a platform project), `dev/` (development-only tools).
"""
