"""Sign in to jetshop's own issuer as a browser would: the OAuth 2.0
authorization code flow with PKCE (RFC 7636, S256), as the public client
`swagger-ui`, through the real login form. Standard library only, so it runs
on a fresh machine before anything is installed.

Used by the fuzz target (`ops/scripts/fuzz`) and meant for the release
smoke; both need a real access token and must not mint one behind the
issuer's back.

    import pkce_login
    scopes = pkce_login.discovery(base)["scopes_supported"]
    token = pkce_login.access_token(base, "admin@jetshop.local", password, scopes)

Every step checks what the protocol promises (a signed request on the login
page, a 303 back to the registered redirect URI with our `state` and the
issuer's `iss` (RFC 9207), a bearer token for the code and verifier) and
raises `LoginError` naming the step otherwise.
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

# The public client Swagger UI uses, and the receiver page it registers.
CLIENT_ID = "swagger-ui"
RECEIVER_PATH = "/docs/oauth-receiver.html"
DISCOVERY_PATH = "/.well-known/openid-configuration"
TIMEOUT_S = 30


class LoginError(Exception):
    """A step of the flow did not answer as the protocol says."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # The authorization server's answer *is* the redirect: read its Location
    # instead of following it to the receiver page.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _send(req: urllib.request.Request):
    try:
        return _opener.open(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        # Non-2xx (and 3xx, since redirects are not followed) land here.
        return e


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    verifier = _b64url(secrets.token_bytes(32))
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


class _LoginForm(html.parser.HTMLParser):
    """The login page's form: where it posts and its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.hidden[a["name"]] = a.get("value") or ""


def discovery(base: str) -> dict:
    """The issuer's OpenID Connect discovery document."""
    resp = _send(urllib.request.Request(base.rstrip("/") + DISCOVERY_PATH))
    raw = resp.read().decode()
    if resp.status != 200:
        raise LoginError(f"GET {DISCOVERY_PATH} answered {resp.status}: {raw[:300]}")
    return json.loads(raw)


def tokens(base: str, email: str, password: str, scopes: list[str]) -> dict:
    """The token response (access, refresh and id token, granted `scope`)
    for `email` signing in at `base` and asking for `scopes`."""
    base = base.rstrip("/")
    meta = discovery(base)
    redirect_uri = base + RECEIVER_PATH
    verifier, challenge = pkce_pair()
    state = _b64url(secrets.token_bytes(16))
    authorize = meta["authorization_endpoint"]
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

    # 1. The login page: a form carrying the signed authorization request.
    page = _send(urllib.request.Request(f"{authorize}?{query}"))
    body = page.read().decode()
    if page.status != 200:
        raise LoginError(f"GET {authorize} answered {page.status}: {body[:300]}")
    form = _LoginForm()
    form.feed(body)
    if "request" not in form.hidden:
        raise LoginError("the login page has no hidden 'request' field")
    target = urllib.parse.urljoin(authorize, form.action or authorize)

    # 2. The credentials, posted as the browser would: a 303 to the
    # receiver with the code.
    fields = dict(form.hidden, email=email, password=password)
    answer = _send(
        urllib.request.Request(
            target,
            data=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
    )
    location = answer.headers.get("Location")
    if answer.status not in (302, 303) or not location:
        raise LoginError(
            f"POST {target} answered {answer.status} (wrong password?): {answer.read()[:300]!r}"
        )
    back = urllib.parse.urlsplit(location)
    if f"{back.scheme}://{back.netloc}{back.path}" != redirect_uri:
        raise LoginError(f"redirected to {location}, not to {redirect_uri}")
    params = dict(urllib.parse.parse_qsl(back.query))
    if "error" in params:
        raise LoginError(f"the issuer refused: {params['error']}: {params.get('error_description')}")
    if params.get("state") != state:
        raise LoginError(f"state came back as {params.get('state')!r}")
    if params.get("iss", meta["issuer"]) != meta["issuer"]:
        raise LoginError(f"iss came back as {params.get('iss')!r}, not {meta['issuer']!r}")
    if "code" not in params:
        raise LoginError(f"no code in the redirect: {location}")

    # 3. The code and the verifier buy the tokens.
    grant = _send(
        urllib.request.Request(
            meta["token_endpoint"],
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
        raise LoginError(f"POST {meta['token_endpoint']} answered {grant.status}: {raw[:300]}")
    granted = json.loads(raw)
    if str(granted.get("token_type", "")).lower() != "bearer" or not granted.get("access_token"):
        raise LoginError(f"the token response has no bearer access token: {sorted(granted)}")
    return granted


def access_token(base: str, email: str, password: str, scopes: list[str]) -> str:
    """The access token granted to `email` for `scopes` by `base`'s issuer."""
    return tokens(base, email, password, scopes)["access_token"]
