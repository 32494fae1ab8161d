"""``HubClient``: the hub's REST API (see :mod:`.hub.apihandlers`) from Python, over ``requests``.

::

    from livepandas_ipython.client import HubClient

    hub = HubClient("http://127.0.0.1:8000", "alice", key)
    canvas = hub.create_canvas(open("code.py").read(), static={"logo.png": png_bytes})
    session = hub.wait_for_socket(hub.create_session(canvas["id"])["id"], timeout=30)
    print(session["socket"])  # host:port of a worker serving the canvas

Methods return the hub's JSON models (dicts). Every failure raises :class:`~.errors.HubError`:
with ``status`` and the hub's ``message`` for an error answer, with ``status`` None when the hub
can't be reached (the message names the URL). Defaults come from the environment:
``LIVEPANDAS_HUB_URL`` (else ``http://127.0.0.1:8000``), ``LIVEPANDAS_USERNAME`` and
``LIVEPANDAS_API_KEY``.
"""

import base64
import os
import time
from urllib.parse import quote, urlsplit

import requests

from .errors import HubError

__all__ = ["HubClient", "DEFAULT_HUB_URL", "hub_url", "HubError"]

DEFAULT_HUB_URL = "http://127.0.0.1:8000"

_KEEP = object()


def hub_url(url=None):
    """*url* (else ``LIVEPANDAS_HUB_URL``, else the default) with a scheme and a trailing slash."""
    url = (url or os.environ.get("LIVEPANDAS_HUB_URL") or DEFAULT_HUB_URL).strip()
    if "://" not in url:
        url = "http://" + url
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise HubError(f"{url!r} is not a valid hub URL (expected http://host:port/)", url=url)
    return url if url.endswith("/") else url + "/"


def encode_static(files):
    """``{path: bytes}`` as the API's ``{path: base64 text}`` (None stays None)."""
    if files is None:
        return None
    encoded = {}
    for path, data in files.items():
        if isinstance(data, str):
            data = data.encode("utf-8")
        encoded[path] = base64.b64encode(bytes(data)).decode("ascii")
    return encoded


class HubClient:
    """A client of one hub, as one user.

    Parameters
    ----------
    url : str, optional
        The hub's URL (env: ``LIVEPANDAS_HUB_URL``; default ``http://127.0.0.1:8000``).
    user, key : str, optional
        Credentials for the account endpoints (env: ``LIVEPANDAS_USERNAME``,
        ``LIVEPANDAS_API_KEY``). Sessions and :meth:`info` need none.
    timeout : float
        Seconds to wait for each answer.
    """

    def __init__(self, url=None, user=None, key=None, timeout=30.0):
        self.url = hub_url(url)
        self.user = user if user is not None else os.environ.get("LIVEPANDAS_USERNAME") or None
        self.key = key if key is not None else os.environ.get("LIVEPANDAS_API_KEY") or None
        self.timeout = timeout
        self._http = requests.Session()
        self._http.headers["Accept"] = "application/json"

    def __repr__(self):
        return f"<HubClient {self.url} user={self.user!r}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._http.close()

    # -- requests ---------------------------------------------------------------------------

    def _auth(self):
        missing = [what for what, value in (("user name", self.user), ("API key", self.key)) if not value]
        if missing:
            raise HubError(
                f"no {' and no '.join(missing)} for the hub at {self.url} "
                "(give them, or set LIVEPANDAS_USERNAME and LIVEPANDAS_API_KEY)",
                url=self.url,
            )
        return {"Authorization": f"APIKey {self.user}:{self.key}"}

    def request(self, method, path, *, auth=True, json=None, data=None, expect_json=True):
        """Send one request to hub *path* (``api/v1/...``); return the decoded JSON (None for 204)."""
        url = self.url + path.lstrip("/")
        headers = self._auth() if auth else {}
        try:
            response = self._http.request(method, url, headers=headers, json=json, data=data, timeout=self.timeout)
        except requests.Timeout:
            raise HubError(f"the hub at {self.url} did not answer within {self.timeout:g} s", url=url) from None
        except requests.ConnectionError as exc:
            raise HubError(f"cannot reach the hub at {self.url}: {_reason(exc)}", url=url) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise HubError(f"{self.url!r} is not a valid hub URL", url=url) from None
        except requests.exceptions.InvalidHeader:
            raise HubError("the user name or API key holds characters a header can't carry", url=url) from None
        except requests.RequestException as exc:
            raise HubError(f"request to the hub at {self.url} failed: {exc}", url=url) from None
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not expect_json:
            return None
        try:
            return response.json()
        except ValueError:
            raise HubError(
                f"the answer from {url} is not JSON: is {self.url} a livepandas hub?",
                status=response.status_code,
                url=url,
                response=response,
                reason=response.reason,
            ) from None

    # -- the hub and the account ------------------------------------------------------------

    def info(self):
        """``GET /api/v1/``: ``{"version", "canvases", "canvas_sessions", "keys", "user"}``."""
        return self.request("GET", "api/v1/", auth=False)

    def whoami(self):
        """``GET /api/v1/user/``: the account of these credentials (checks them)."""
        return self.request("GET", "api/v1/user/")

    # -- canvases ---------------------------------------------------------------------------

    def create_canvas(self, python, html=None, static=None, name=None):
        """Upload a canvas; returns its model ``{"id", "functions", "self", ...}``.

        *static* is ``{relative path: bytes}`` (sent base64-encoded).
        """
        payload = {"python": python}
        if html is not None:
            payload["html"] = html
        if static:
            payload["static"] = encode_static(static)
        if name is not None:
            payload["name"] = name
        return self.request("POST", "api/v1/canvases/", json=payload)

    def update_canvas(self, canvas_id, python=_KEEP, html=_KEEP, static=_KEEP, name=_KEEP):
        """Replace the fields given (``html=None`` removes the view, ``static={}`` the files)."""
        payload = {}
        if python is not _KEEP:
            payload["python"] = python
        if html is not _KEEP:
            payload["html"] = html
        if static is not _KEEP:
            payload["static"] = encode_static(static) if static is not None else {}
        if name is not _KEEP:
            payload["name"] = name
        return self.request("PUT", f"api/v1/canvases/{_segment(canvas_id)}/", json=payload)

    def canvas(self, canvas_id):
        """One canvas with its ``python``, ``html`` and ``static`` paths."""
        return self.request("GET", f"api/v1/canvases/{_segment(canvas_id)}/")

    def canvases(self):
        """The caller's canvases, oldest first."""
        return self.request("GET", "api/v1/canvases/")

    def delete_canvas(self, canvas_id):
        """Delete a canvas (its sessions stop)."""
        self.request("DELETE", f"api/v1/canvases/{_segment(canvas_id)}/")

    def share_url(self, canvas_id):
        """The page that opens canvas *canvas_id*'s view on a fresh session."""
        return f"{self.url}canvases/{_segment(canvas_id)}/"

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, canvas_id):
        """Start a session on a canvas; returns the session (``socket`` may still be None)."""
        return self.request("POST", "api/v1/canvas_sessions/", auth=False, json={"canvas": canvas_id})

    def session(self, session_id):
        """The session (this also keeps it alive)."""
        return self.request("GET", f"api/v1/canvas_sessions/{_segment(session_id)}/", auth=False)

    def wait_for_socket(self, session_id, timeout=30.0, interval=0.2):
        """Poll a session until its worker runs; returns the session with ``socket`` set.

        Raises
        ------
        HubError
            When the session failed or stopped (the message says why), or after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            model = self.session(session_id)
            if model.get("socket") and model.get("status") == "running":
                return model
            if model.get("status") in ("failed", "stopped"):
                why = f": {model['error']}" if model.get("error") else ""
                raise HubError(f"session {model['status']}{why}", url=model.get("self"))
            if time.monotonic() >= deadline:
                raise HubError(
                    f"the session's worker did not start within {timeout:g} s (status {model.get('status')})",
                    url=model.get("self"),
                )
            time.sleep(interval)

    def delete_session(self, session_id):
        """Stop a session and its worker now."""
        self.request("DELETE", f"api/v1/canvas_sessions/{_segment(session_id)}/", auth=False)


def _segment(value):
    """*value* as one URL path segment (ids can't smuggle in other paths)."""
    return quote(str(value), safe="")


def _error(response):
    """The :class:`HubError` for an error answer: the hub's JSON ``message``, else the reason."""
    message, line = None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
        line = body.get("line") if isinstance(body.get("line"), int) else None
    if message is None:
        text = " ".join(response.text.split())[:200]
        message = text or response.reason or "no message"
    return HubError(
        message,
        status=response.status_code,
        url=response.url,
        line=line,
        response=response,
        reason=response.reason,
    )


def _reason(exc):
    """The innermost cause of a connection failure, in a few words ("Connection refused")."""
    cause = exc
    while True:
        inner = getattr(cause, "reason", None) or cause.__context__ or (cause.args[0] if cause.args else None)
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    text = getattr(cause, "strerror", None) or str(cause)
    if "] " in text and text.startswith("<"):
        text = text.split("] ", 1)[1]
    return text.strip() or "connection failed"
