"""The hub's web pages: register, log in, home, profile with API keys, and a share page per canvas.

Routes (server-rendered with ``tornado.template``; templates in ``templates/``, the style sheet
and the share page's script in ``static/``, served under ``/hub-static/``)::

    GET  /                                   home: one's canvases, or a welcome
    GET  /register   POST /register          create an account (LivePandasHub.allow_registration)
    GET  /login      POST /login             log in (``?next=/local/path`` returns there after)
    GET  /logout     POST /logout            log out (a form button)
    GET  /profile                            API keys by prefix (sign-in required)
    POST /profile/keys                       a new key, shown once on the resulting page
    POST /profile/keys/<prefix>/revoke       revoke a key
    GET  /canvases/<id>/                     share page: the canvas's view on a fresh session

Signing in sets a signed cookie (``set_signed_cookie``: HttpOnly, SameSite=Lax, Secure over
HTTPS) holding the user's id and when it was issued; logging out ends every log-in of that user
issued before (the time is kept in the database), so a copied cookie is of no use afterwards.
The cookie secret comes from ``LivePandasHub.cookie_secret`` or the file ``cookie_secret`` in the
data directory (mode 0600, created on the first start), so log-ins survive a hub restart. Every form carries Tornado's XSRF token (``xsrf_cookies``); a POST without
it answers ``403`` with an HTML page. The REST API authenticates by header and skips that check
(see :mod:`.apihandlers.base`).

The pages may not be framed (``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``) and load
only the hub's own scripts. The share page frames the session's worker, which is another origin
(``http://<socket>/``), so its CSP allows ``frame-src http: https:``. Its script creates the
session through the public session API, polls until the worker answers, keeps the session alive
every minute while the page is open and deletes it on ``pagehide``.

Unknown paths answer an HTML 404 page, except under :data:`API_PREFIXES`, where the JSON 404 of
the REST API stays.
"""

import asyncio
import datetime
import http.client
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from urllib.parse import urlsplit

import tornado.web

from .auth import check_password, hash_password, validate_username
from .errors import BadRequest, APIError, NotFound

__all__ = [
    "TEMPLATE_PATH",
    "STATIC_PATH",
    "STATIC_URL_PREFIX",
    "API_PREFIXES",
    "USER_COOKIE",
    "COOKIE_SECRET_FILE",
    "MIN_PASSWORD_LENGTH",
    "load_cookie_secret",
    "safe_next",
    "PageHandler",
    "NotFoundPage",
    "StaticHandler",
    "default_handlers",
]

log = logging.getLogger("livepandas.hub")

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE_PATH = os.path.join(HERE, "templates")
STATIC_PATH = os.path.join(HERE, "static")
STATIC_URL_PREFIX = "/hub-static/"

#: Path prefixes of the REST APIs: an unknown path there answers the JSON 404, not a page.
API_PREFIXES = ("/api/", "/users/")

USER_COOKIE = "livepandas-hub-user"
COOKIE_SECRET_FILE = "cookie_secret"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_MAX_NOTE = 200
# The share page keeps its session alive this often (seconds); sessions last session_timeout.
KEEPALIVE_SECONDS = 60

_CSP = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'"


class PageError(Exception):
    """An error shown to the user as an HTML page with *status* and *message*."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# -- cookie secret ------------------------------------------------------------------------------


def load_cookie_secret(data_dir):
    """The cookie secret kept in *data_dir* (``cookie_secret``, hex), created on first use.

    The file is created with mode 0600; an existing file that others can read is refused, as is
    one that does not hold at least 32 bytes of hex.

    Raises
    ------
    RuntimeError
        With a message for the log, when the file can't be created, read or trusted.
    """
    path = os.path.join(data_dir, COOKIE_SECRET_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeError(f"cannot create the cookie secret file {path}: {exc.strerror or exc}") from None
    else:
        secret = secrets.token_bytes(32)
        with os.fdopen(fd, "w") as f:
            f.write(secret.hex() + "\n")
        return secret
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeError(f"cannot read the cookie secret file {path}: {exc}") from None
    if mode & 0o077:
        raise RuntimeError(f"the cookie secret file {path} is readable by other users (mode {mode:o}); chmod 600 it")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise RuntimeError(f"the cookie secret file {path} must hold at least 32 bytes as hex; delete it for a new one")
    return secret


def safe_next(value, default="/"):
    """*value* if it is a path on this site (``/...``, not ``//host`` or ``/\\host``), else *default*."""
    if not value or not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def _when(timestamp):
    """A Unix time as ``2024-05-01 12:00 UTC`` (or an em dash for None)."""
    if timestamp is None:
        return "—"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# -- handlers -------------------------------------------------------------------------------------


class PageMixin:
    """Headers and HTML error pages shared by every page handler (and the static files)."""

    csp = _CSP

    @property
    def hub(self):
        return self.settings["hub"]

    def set_default_headers(self):
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", self.csp)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def write_error(self, status_code, **kwargs):
        """Every error as an HTML page with a one-line message; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PageError):
            status_code, message = exc.status, exc.message
        elif isinstance(exc, APIError):
            status_code, message = exc.status, exc.message
        elif status_code == 404:
            message = f"There is no page at {self.request.path}."
        elif status_code == 405:
            message = f"{self.request.method} is not allowed here."
        elif status_code >= 500:
            message = "Something went wrong on the hub; the error is logged."
        else:
            message = http.client.responses.get(status_code, "Error") + "."
        self.set_status(status_code)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        try:
            self.current_user
        except Exception:  # an error page must not fail itself: show it signed out
            self._current_user = None
        title = http.client.responses.get(status_code, "Error")
        self.finish(self.render_string("error.html", status=status_code, title=title, message=message))

    def log_exception(self, typ, value, tb):
        if isinstance(value, (PageError, APIError, tornado.web.HTTPError)):
            return  # answered with its page, and in the access log
        super().log_exception(typ, value, tb)

    def get_template_namespace(self):
        namespace = super().get_template_namespace()
        namespace.update(
            hub_allows_registration=self.hub.allow_registration,
            when=_when,
        )
        return namespace


class PageHandler(PageMixin, tornado.web.RequestHandler):
    """Base of the hub's HTML pages: the signed-in user, XSRF checks, HTML errors."""

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def head(self, *args, **kwargs):
        """HEAD: the GET without its body (Tornado drops the body of a HEAD answer)."""
        return self.get(*args, **kwargs)

    def prepare(self):
        limit = self.settings.get("max_request_size")
        if self.request.method == "POST" and limit and len(self.request.body) > limit:
            raise PageError(413, f"The form is too large (over {limit} bytes).")

    def get_current_user(self):
        value = self.get_signed_cookie(USER_COOKIE, max_age_days=self.hub.cookie_max_age_days)
        if not value:
            return None
        try:
            user_id, issued = value.split(b":")
            user_id, issued = int(user_id), float(issued)
        except ValueError:
            return None
        user = self.hub.db.user_by_id(user_id)
        if user is None or (user["logged_out"] is not None and issued <= user["logged_out"]):
            return None  # the user logged out since (everywhere), or is gone
        return user

    def check_xsrf_cookie(self):
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError as exc:
            log.warning("refused %s %s from %s: %s", self.request.method, self.request.path,
                        self.request.remote_ip, exc.log_message)
            raise PageError(
                403,
                "This form was not sent from a page of this hub, or the page is too old "
                "(the form's XSRF token is missing or wrong). Reload the page and try again.",
            ) from None

    def sign_in(self, user):
        """Set the signed log-in cookie for *user* (a row)."""
        self.set_signed_cookie(
            USER_COOKIE,
            f"{user['id']}:{time.time():.6f}",  # id and issue time, checked against logged_out
            expires_days=self.hub.cookie_max_age_days,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            path="/",
        )
        self._current_user = user

    def next_url(self):
        return safe_next(self.get_argument("next", "/"))

    def redirect_after_post(self, url):
        self.redirect(url, status=303)

    def render_form(self, template, status=200, **values):
        self.set_status(status)
        self.render(template, **values)


class HomePage(PageHandler):
    def get(self):
        """GET / — one's canvases (signed in) or a welcome with links."""
        canvases = []
        if self.current_user:
            for row in self.hub.canvases.list(self.current_user["id"]):
                functions = json.loads(row["functions"])
                canvases.append(
                    {
                        "id": row["id"],
                        "name": row["name"],
                        "functions": [f["signature"] for f in functions],
                        "created": row["created"],
                        "updated": row["updated"],
                        "share": f"/canvases/{row['id']}/",
                    }
                )
        self.render("home.html", canvases=canvases)


class RegisterPage(PageHandler):
    def prepare(self):
        super().prepare()
        if not self.hub.allow_registration:
            raise PageError(403, "Registration is turned off on this hub; ask its administrator for an account.")

    def get(self):
        """GET /register — the registration form."""
        self.render("register.html", error=None, name="", next=self.next_url())

    async def post(self):
        """POST /register — name, password, password2 → signed in, or the form with the problem."""
        name = self.get_body_argument("name", "").strip()
        password = self.get_body_argument("password", "")
        again = self.get_body_argument("password2", "")
        values = dict(name=name, next=self.next_url())
        try:
            validate_username(name)
        except BadRequest as exc:
            return self.render_form("register.html", 400, error=f"{exc.message[0].upper()}{exc.message[1:]}.",
                                    **values)
        if len(password) < MIN_PASSWORD_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            return self.render_form(
                "register.html", 400,
                error=f"A password is {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.", **values
            )
        if password != again:
            return self.render_form("register.html", 400, error="The two passwords differ.", **values)
        if self.hub.db.user_by_name(name) is not None:
            return self.render_form("register.html", 409, error=f"The name {name} is taken; choose another.",
                                    **values)
        password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
        try:
            user_id = self.hub.db.add_user(name, password_hash)
        except sqlite3.IntegrityError:  # taken between the check and the insert
            return self.render_form("register.html", 409, error=f"The name {name} is taken; choose another.",
                                    **values)
        self.hub.log.info("user %s registered from %s", name, self.request.remote_ip)
        self.sign_in(self.hub.db.user_by_id(user_id))
        self.redirect_after_post(values["next"])


class LoginPage(PageHandler):
    def get(self):
        """GET /login — the log-in form."""
        self.render("login.html", error=None, name="", next=self.next_url())

    async def post(self):
        """POST /login — name and password → signed in and sent to ``next``, or 403 with the form."""
        name = self.get_body_argument("name", "").strip()
        password = self.get_body_argument("password", "")
        user = self.hub.db.user_by_name(name) if name else None
        stored = user["password"] if user is not None else None
        if len(password) > MAX_PASSWORD_LENGTH:
            password, stored = "", None  # never a match, checked at the same cost
        # check_password costs the same for an unknown user or one without a password.
        ok = await asyncio.get_running_loop().run_in_executor(None, check_password, password, stored)
        if not ok or user is None:
            self.hub.log.warning("failed log-in for %r from %s", name[:64], self.request.remote_ip)
            return self.render_form("login.html", 403, error="Invalid user name or password.", name=name,
                                    next=self.next_url())
        self.sign_in(user)
        self.redirect_after_post(self.next_url())


class LogoutPage(PageHandler):
    def get(self):
        """GET /logout — a page with the log-out button (logging out is a POST)."""
        self.render("logout.html")

    def post(self):
        """POST /logout — end the log-in: this cookie and every other one issued before now."""
        if self.current_user is not None:
            self.hub.db.log_out(self.current_user["id"], time.time())
        self.clear_cookie(USER_COOKIE, path="/")
        self._current_user = None
        self.redirect_after_post("/")


class ProfilePage(PageHandler):
    def render_profile(self, status=200, new_key=None, error=None, note=""):
        user = self.current_user
        keys = self.hub.db.keys_of(user["id"])
        self.set_status(status)
        self.render("profile.html", user=user, keys=keys, new_key=new_key, error=error, note=note)

    @tornado.web.authenticated
    def get(self):
        """GET /profile — the user's API keys (prefixes only) and the form for a new one."""
        self.render_profile()


class KeysPage(ProfilePage):
    @tornado.web.authenticated
    def post(self):
        """POST /profile/keys — a new key (optional ``note``), shown once on the page returned."""
        note = self.get_body_argument("note", "").strip()
        if len(note) > _MAX_NOTE:
            return self.render_profile(400, error=f"A note is at most {_MAX_NOTE} characters.", note=note)
        row, key = self.hub.authenticator.create_key(self.current_user["id"], note)
        self.hub.log.info("user %s created key %s…", self.current_user["name"], row["prefix"])
        self.render_profile(201, new_key={"prefix": row["prefix"], "key": key, "note": note})


class RevokeKeyPage(PageHandler):
    @tornado.web.authenticated
    def post(self, prefix):
        """POST /profile/keys/<prefix>/revoke — revoke one of the user's keys."""
        if not self.hub.db.revoke_key(self.current_user["id"], prefix):
            raise PageError(404, f"You have no key {prefix}.")
        self.hub.log.info("user %s revoked key %s…", self.current_user["name"], prefix)
        self.redirect_after_post("/profile")


class SharePage(PageHandler):
    # The view runs on the session's worker, another origin: allow framing it.
    csp = _CSP + "; frame-src http: https:"

    @tornado.web.addslash
    def get(self, canvas_id):
        """GET /canvases/<id>/ — public: the canvas's name and functions, and its view on a new session."""
        try:
            row = self.hub.canvases.get(canvas_id)
        except NotFound:
            raise PageError(404, f"There is no canvas {canvas_id}; it may have been deleted.") from None
        functions = json.loads(row["functions"])
        self.render(
            "share.html",
            canvas=row,
            functions=[f["signature"] for f in functions],
            sessions_url="/api/v1/canvas_sessions/",
            keepalive=KEEPALIVE_SECONDS,
        )


class NotFoundPage(PageHandler):
    """Any path no handler claims: an HTML 404 (any method)."""

    def check_xsrf_cookie(self):
        """Nothing here changes state: a POST to an unknown path is a 404, not a 403."""

    def prepare(self):
        raise tornado.web.HTTPError(404)


class StaticHandler(PageMixin, tornado.web.StaticFileHandler):
    """``/hub-static/``: the style sheet and scripts of the pages (HTML error pages, same headers)."""

    def get_current_user(self):
        return None


default_handlers = [
    (r"/", HomePage),
    (r"/register/?", RegisterPage),
    (r"/login/?", LoginPage),
    (r"/logout/?", LogoutPage),
    (r"/profile/?", ProfilePage),
    (r"/profile/keys/?", KeysPage),
    (r"/profile/keys/([^/]+)/revoke/?", RevokeKeyPage),
    (r"/canvases/([^/]+)/?", SharePage),
]
