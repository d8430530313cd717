"""Sign in to jetshop the way an OAuth client library does: the authorization
code flow with PKCE (RFC 7636, S256) against the gateway's own issuer.

Shared by the release smoke (`e2e/smoke.py`) and the fuzz target, which both
need a real access token and must not mint one behind the issuer's back.
Standard library only, so it runs on a fresh machine before anything is
installed.

    token = pkce_login.access_token(base, "admin@jetshop.local", password,
                                    ["orders:read", "orders:write"])
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request

# The public client Swagger UI uses; `jetshop up` registers its receiver page.
CLIENT_ID = "swagger-ui"
RECEIVER_PATH = "/docs/oauth-receiver.html"


class LoginError(Exception):
    """A step of the flow did not answer as the protocol says."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # The authorization server's answer *is* the redirect: read its Location
    # instead of following it to the receiver page.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class _HiddenInputs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _send(req: urllib.request.Request):
    try:
        return _opener.open(req, timeout=30)
    except urllib.error.HTTPError as e:
        # 3xx surface here because redirects are not followed.
        return e


def access_token(base: str, email: str, password: str, scopes: list[str]) -> str:
    """The access token granted to `email` for `scopes` through `base`'s issuer."""
    return tokens(base, email, password, scopes)["access_token"]


def tokens(base: str, email: str, password: str, scopes: list[str]) -> dict:
    """The whole token response (access, refresh, id token, granted scope)."""
    base = base.rstrip("/")
    redirect_uri = base + RECEIVER_PATH
    verifier = _b64url(secrets.token_bytes(32))
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    state = _b64url(secrets.token_bytes(16))
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )

    # 1. The login page carries the signed request as a hidden field.
    page = _send(urllib.request.Request(f"{base}/oauth/authorize?{query}"))
    body = page.read().decode()
    if page.status != 200:
        raise LoginError(f"GET /oauth/authorize answered {page.status}: {body[:300]}")
    form = _HiddenInputs()
    form.feed(body)
    if "request" not in form.fields:
        raise LoginError("the login page has no hidden 'request' field")

    # 2. Submitting the credentials redirects to the receiver with the code.
    fields = dict(form.fields, email=email, password=password)
    answer = _send(
        urllib.request.Request(
            f"{base}/oauth/authorize",
            data=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
    )
    location = answer.headers.get("Location")
    if answer.status not in (302, 303) or not location:
        raise LoginError(f"POST /oauth/authorize answered {answer.status}: {answer.read()[:300]!r}")
    back = urllib.parse.urlsplit(location)
    if f"{back.scheme}://{back.netloc}{back.path}" != redirect_uri:
        raise LoginError(f"redirected to {location}, not to {redirect_uri}")
    params = dict(urllib.parse.parse_qsl(back.query))
    if params.get("state") != state:
        raise LoginError(f"state came back as {params.get('state')!r}")
    if "code" not in params:
        raise LoginError(f"no code in the redirect: {location}")

    # 3. The code and the verifier buy the tokens.
    grant = _send(
        urllib.request.Request(
            f"{base}/oauth/token",
            data=urllib.parse.urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": params["code"],
                    "redirect_uri": redirect_uri,
                    "client_id": CLIENT_ID,
                    "code_verifier": verifier,
                }
            ).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
    )
    raw = grant.read().decode()
    if grant.status != 200:
        raise LoginError(f"POST /oauth/token answered {grant.status}: {raw[:300]}")
    return json.loads(raw)
