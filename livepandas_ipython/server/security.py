"""Who may call a function server: Host check, cross-site refusal, CORS and tokens.

The rules, in order, for every function call (HTTP or WebSocket) and ``/_functions``:

1. **Token.** When the server has a token, a request that carries it (``?token=``, an
   ``Authorization: token <t>`` header, or the cookie set after a ``?token=`` visit) passes the
   Host check. A server bound beyond loopback *requires* the token on every request.
2. **Host.** Otherwise the ``Host`` header must name a loopback address (``localhost``,
   ``*.localhost``, ``127.0.0.0/8``, ``::1``) or one of ``allow_hosts`` (``"*"`` admits any). This
   stops DNS rebinding: a hostile page on ``evil.example`` resolving to 127.0.0.1 sends
   ``Host: evil.example``. A proxy (jupyter-server-proxy) forwards the public Host, so proxied
   URLs carry the token.
3. **Origin.** A browser request whose ``Origin`` is another site's, or that says
   ``Sec-Fetch-Site: cross-site``, is refused unless its origin is in ``allow_origins`` (``"*"``
   admits all), in which case CORS headers are sent.

The view (``/``), ``/livepandas.js`` and ``/static/`` are read-only pages: they skip rule 3 so a
notebook on another port can show the view in an iframe, but rules 1 and 2 still apply.
"""

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from ..errors import Forbidden

__all__ = ["Security", "is_loopback_host", "new_token"]

TOKEN_COOKIE = "livepandas-token"


def new_token():
    """A fresh URL-safe token (256 bits)."""
    return secrets.token_urlsafe(32)


def split_host(host):
    """``"[::1]:8888"`` → ``"::1"``, ``"Example.org:80"`` → ``"example.org"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback_host(host):
    """True for ``localhost``, ``*.localhost`` and loopback IP literals (host without port)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Security:
    """The access policy of one function server.

    Parameters
    ----------
    token : str or None
        The server's token, or None for none.
    require_token : bool
        Refuse every request without the token (for servers bound beyond loopback).
    allow_hosts : iterable of str
        Host names admitted besides loopback; ``"*"`` admits any.
    allow_origins : iterable of str
        Browser origins (``"https://example.org"``) allowed to call cross-site, with CORS
        headers; ``"*"`` allows any.
    """

    def __init__(self, token=None, require_token=False, allow_hosts=(), allow_origins=()):
        if require_token and not token:
            raise ValueError("require_token needs a token")
        self.token = token or None
        self.require_token = require_token
        self.allow_hosts = frozenset(split_host(h) if h != "*" else h for h in allow_hosts)
        self.allow_origins = frozenset(o.rstrip("/").lower() for o in allow_origins)
        self.any_host = "*" in self.allow_hosts
        self.any_origin = "*" in self.allow_origins

    # -- pieces -----------------------------------------------------------------------------

    def token_ok(self, request):
        """True when *request* carries this server's token (query, header or cookie)."""
        if not self.token:
            return False
        candidates = []
        query = request.query_arguments.get("token")
        if query:
            candidates.append(query[-1])
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "token ":
            candidates.append(auth[6:].strip().encode())
        # The server names its cookie per port (cookies ignore ports): TOKEN_COOKIE-<port>.
        for name, cookie in request.cookies.items():
            if name == TOKEN_COOKIE or name.startswith(TOKEN_COOKIE + "-"):
                candidates.append(cookie.value.encode())
        expected = self.token.encode()
        return any(hmac.compare_digest(c, expected) for c in candidates)

    def host_ok(self, request):
        if self.any_host:
            return True
        host = split_host(request.host or "")
        return is_loopback_host(host) or host in self.allow_hosts

    def origin_allowed(self, origin):
        """True when *origin* is on the CORS allow-list."""
        return self.any_origin or origin.rstrip("/").lower() in self.allow_origins

    def cross_site(self, request):
        """True when a browser sent *request* from another site (by Origin or Sec-Fetch-Site)."""
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin == "null":
                return True
            return urlsplit(origin).netloc.lower() != (request.host or "").lower()
        return request.headers.get("Sec-Fetch-Site") == "cross-site"

    # -- the policy -------------------------------------------------------------------------

    def check(self, request, *, calls=True):
        """Raise :class:`Forbidden` unless *request* may proceed.

        Returns True when the request presented a valid token (the caller may then set the cookie).
        """
        has_token = self.token_ok(request)
        if self.require_token and not has_token:
            raise Forbidden("this server needs its token: add ?token=<token> to the URL")
        if not has_token and not self.host_ok(request):
            raise Forbidden(
                f"Host {request.host!r} is not allowed; use localhost, add it to allow_hosts, "
                "or open the URL with the server's token"
            )
        if calls and self.cross_site(request):
            origin = request.headers.get("Origin")
            if origin is None or not self.origin_allowed(origin):
                raise Forbidden(
                    f"cross-site request from {origin or 'another site'} refused; "
                    "add the origin to allow_origins to permit it"
                )
        return has_token

    def cors_origin(self, request):
        """The value for ``Access-Control-Allow-Origin`` for *request*, or None."""
        origin = request.headers.get("Origin")
        if origin and self.origin_allowed(origin):
            return "*" if self.any_origin and not self.token else origin
        return None
