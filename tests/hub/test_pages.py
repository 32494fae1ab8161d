"""The hub's web pages over HTTP, as a browser without JavaScript uses them (``requests.Session``).

Register, log in and out, API keys on the profile page, the home page's canvases, the share
page, CSRF refusals, open redirects, and the cookie secret surviving a restart. The share page's
script and the pages in a real browser are in ``tests/browser/test_hub_pages.py``.
"""

import os
import re
import stat
from html import unescape

import pytest
import requests

from .conftest import ADD, _close_all, _make_factory

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def pages_hub(tmp_path_factory):
    """One hub for the module (no warm workers: these pages start no session)."""
    hubs = []
    hub = _make_factory(tmp_path_factory, hubs)("--warm-pool-size", "0", start=False)
    hub.create_user("alice", password=PASSWORD)
    yield hub.start()
    _close_all(hubs)


class Visitor:
    """A browser without JavaScript: a cookie jar, forms with their XSRF token, no redirects followed."""

    def __init__(self, hub):
        self.hub = hub
        self.http = requests.Session()

    def url(self, path):
        return self.hub.url + path.lstrip("/")

    def get(self, path, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(self.url(path), timeout=15, **kwargs)

    def post(self, path, data=None, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        return self.http.post(self.url(path), data=data, timeout=15, **kwargs)

    def xsrf(self, path):
        """The XSRF token of the first form on *path* (sets the XSRF cookie too)."""
        r = self.get(path)
        assert r.status_code == 200, r.text
        return form_token(r.text)

    def submit(self, page, action, **fields):
        """Load *page*, then POST its form *action* with *fields* and the page's token."""
        return self.post(action, data={"_xsrf": self.xsrf(page), **fields})

    def register(self, name, password=PASSWORD, again=None, next=None):
        fields = {"name": name, "password": password, "password2": password if again is None else again}
        if next is not None:
            fields["next"] = next
        return self.submit("/register", "/register", **fields)

    def login(self, name, password=PASSWORD, next=None):
        fields = {"name": name, "password": password}
        if next is not None:
            fields["next"] = next
        return self.submit("/login", "/login", **fields)

    def new_key(self, note=""):
        r = self.submit("/profile", "/profile/keys", note=note)
        assert r.status_code == 201, r.text
        return unescape(re.search(r'<code id="new-key">([^<]+)</code>', r.text).group(1))


def form_token(html):
    match = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert match, "no XSRF field in the form"
    return unescape(match.group(1))


def assert_page(r, status, *texts):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("text/html"), r.headers["Content-Type"]
    for text in texts:
        assert text in r.text, f"{text!r} not in the page:\n{r.text}"
    return r.text


def assert_redirect(r, location, status=303):
    assert r.status_code == status, r.text
    assert r.headers["Location"] == location


def set_cookie(r, name):
    """The Set-Cookie header for *name* (raw, attributes included)."""
    for header in r.raw.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {r.headers}")


# -- the whole journey ----------------------------------------------------------------------------


def test_register_key_upload_home_share_logout(pages_hub):
    carol = Visitor(pages_hub)
    home = carol.get("/")
    assert_page(home, 200, "Welcome", 'href="/login"', 'href="/register"')

    r = carol.register("carol")
    assert_redirect(r, "/")
    cookie = set_cookie(r, "livepandas-hub-user")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; set over HTTPS
    page = assert_page(carol.get("/"), 200, 'id="nav-user">carol<', 'id="no-canvases"')

    # Registration creates no key; the profile makes one and shows it once.
    profile = assert_page(carol.get("/profile"), 200, 'id="profile-name">carol<', 'id="no-keys"')
    key = carol.new_key(note="for <CI>")
    assert len(key) >= 40
    profile = assert_page(carol.get("/profile"), 200, f"{key[:8]}…", "for &lt;CI&gt;")
    assert key not in profile

    # The key works on the REST API: upload a canvas, as the CLI does.
    api = {"Authorization": f"APIKey carol:{key}"}
    r = requests.post(pages_hub.url + "api/v1/canvases/", json={"python": ADD, "name": "Adder <1>"},
                      headers=api, timeout=15)
    assert r.status_code == 201, r.text
    canvas = r.json()

    page = assert_page(carol.get("/"), 200, "Adder &lt;1&gt;", f'href="/canvases/{canvas["id"]}/"',
                       "add(x, y)", "pid()")
    assert "<1>" not in page

    # The share page is public, and may frame the worker (another origin) but not be framed.
    for visitor in (carol, Visitor(pages_hub)):
        r = visitor.get(f"/canvases/{canvas['id']}/")
        assert_page(r, 200, 'id="canvas-name">Adder &lt;1&gt;<', "add(x, y)", "by carol",
                    f'data-canvas="{canvas["id"]}"', "share.js")
        assert r.headers["X-Frame-Options"] == "DENY"
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "frame-src http: https:" in csp
    assert_redirect(carol.get(f"/canvases/{canvas['id']}"), f"/canvases/{canvas['id']}/", 301)

    # Revoke the key: the API refuses it at once.
    prefix = key[:8]
    r = carol.submit("/profile", f"/profile/keys/{prefix}/revoke")
    assert_redirect(r, "/profile")
    assert_page(carol.get("/profile"), 200, 'id="no-keys"')
    assert requests.get(pages_hub.url + "api/v1/user/", headers=api, timeout=15).status_code == 401
    assert_page(carol.submit("/profile", f"/profile/keys/{prefix}/revoke"), 404, "no key")

    # Log out: a POST with the token; the profile then asks for a log-in.
    r = carol.submit("/", "/logout")
    assert_redirect(r, "/")
    assert set_cookie(r, "livepandas-hub-user").startswith("livepandas-hub-user=\"\"; expires=")
    assert_redirect(carol.get("/profile"), "/login?next=%2Fprofile", 302)
    assert_page(carol.get("/"), 200, "Welcome")


def test_logging_out_ends_every_log_in_and_copied_cookies_with_it(pages_hub):
    laptop = Visitor(pages_hub)
    assert_redirect(laptop.register("dora"), "/")
    phone = Visitor(pages_hub)
    assert_redirect(phone.login("dora"), "/")
    copied = Visitor(pages_hub)
    copied.http.cookies.set("livepandas-hub-user", laptop.http.cookies.get("livepandas-hub-user"))
    for visitor in (laptop, phone, copied):
        assert_page(visitor.get("/profile"), 200, 'id="profile-name">dora<')

    assert_redirect(laptop.submit("/", "/logout"), "/")
    for visitor in (laptop, phone, copied):  # the other device and the copy are logged out too
        assert_redirect(visitor.get("/profile"), "/login?next=%2Fprofile", 302)
    assert_redirect(phone.login("dora"), "/")  # a new log-in works
    assert_page(phone.get("/profile"), 200, 'id="profile-name">dora<')
    assert_redirect(copied.get("/profile"), "/login?next=%2Fprofile", 302)


def test_pages_are_not_frameable_and_static_files_are_served(pages_hub):
    visitor = Visitor(pages_hub)
    for path in ("/", "/login", "/register", "/no/such/page"):
        r = visitor.get(path)
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "frame-src" not in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    css = re.search(r'href="(/hub-static/hub\.css\?v=[^"]+)"', visitor.get("/").text).group(1)
    r = visitor.get(css)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/css")
    assert_page(visitor.get("/hub-static/no-such.css"), 404)
    head = requests.head(pages_hub.url + "login", timeout=15)
    assert head.status_code == 200 and head.headers["Content-Type"].startswith("text/html") and not head.content


# -- log-in ----------------------------------------------------------------------------------------


def test_login_of_a_created_user_and_wrong_passwords(pages_hub):
    visitor = Visitor(pages_hub)
    for name, password in (("alice", "wrong password"), ("nobody", PASSWORD), ("alice", ""), ("", "")):
        r = visitor.login(name, password)
        assert_page(r, 403, "Invalid user name or password.")
        assert "livepandas-hub-user" not in r.cookies
    # The form keeps the name typed, escaped.
    assert_page(visitor.login('<b>"x"</b>', "pw"), 403, 'value="&lt;b&gt;&quot;x&quot;&lt;/b&gt;"')

    assert_redirect(visitor.login("alice"), "/")
    assert_page(visitor.get("/profile"), 200, 'id="profile-name">alice<', "created with the user")


def test_next_returns_to_local_paths_only(pages_hub):
    visitor = Visitor(pages_hub)
    r = visitor.get("/profile?tab=keys")
    assert_redirect(r, "/login?next=%2Fprofile%3Ftab%3Dkeys", 302)
    login_page = assert_page(visitor.get(r.headers["Location"]), 200)
    assert 'name="next" value="/profile?tab=keys"' in unescape(login_page)
    assert_redirect(visitor.login("alice", next="/profile?tab=keys"), "/profile?tab=keys")

    for evil in ("//evil.example", "//evil.example/profile", "https://evil.example/", "/\\evil.example",
                 "\\\\evil.example", "javascript:alert(1)", "evil.example", "/\t/evil.example"):
        assert_redirect(visitor.login("alice", next=evil), "/")
        # The form never carries it either.
        assert 'value="/"' in visitor.get("/login", params={"next": evil}).text


# -- registration ------------------------------------------------------------------------------------


def test_registration_errors_rerender_the_form(pages_hub):
    visitor = Visitor(pages_hub)
    page = assert_page(visitor.register("dave", again="something else"), 400, "The two passwords differ.")
    assert 'value="dave"' in page
    assert_page(visitor.register("alice"), 409, "The name alice is taken")
    assert_page(visitor.register("no spaces"), 400, "user name is 1-64 letters")
    assert_page(visitor.register("x" * 65), 400, "user name is 1-64 letters")
    assert_page(visitor.register("dave", password="short"), 400, "A password is 8 to 1024 characters.")
    # None of these signed anyone in or created the account.
    assert_page(visitor.get("/"), 200, "Welcome")
    assert_page(visitor.login("dave"), 403)
    # next is honoured after registering too.
    assert_redirect(visitor.register("dave", next="/profile"), "/profile")


def test_registration_can_be_turned_off(hub):
    h = hub("--warm-pool-size", "0", "--LivePandasHub.allow_registration=False")
    visitor = Visitor(h)
    assert_page(visitor.get("/register"), 403, "Registration is turned off")
    token = visitor.xsrf("/login")
    r = visitor.post("/register", data={"_xsrf": token, "name": "eve", "password": PASSWORD, "password2": PASSWORD})
    assert_page(r, 403, "Registration is turned off")
    assert 'href="/register"' not in visitor.get("/").text
    assert 'href="/register"' not in visitor.get("/login").text
    assert_page(visitor.login("eve"), 403)


# -- CSRF ------------------------------------------------------------------------------------------


def test_forms_without_the_xsrf_token_are_refused(pages_hub):
    visitor = Visitor(pages_hub)
    visitor.xsrf("/login")  # the XSRF cookie is set, the field is missing
    r = visitor.post("/login", data={"name": "alice", "password": PASSWORD})
    assert_page(r, 403, "XSRF token is missing or wrong")
    assert "livepandas-hub-user" not in r.cookies

    assert_redirect(visitor.login("alice"), "/")
    before = visitor.get("/profile").text.count("data-prefix=")
    # A forged form from another site: the user's cookies, but no token (or another visitor's).
    assert_page(visitor.post("/profile/keys", data={"note": "forged"}), 403, "XSRF")
    other = Visitor(pages_hub).xsrf("/login")
    assert_page(visitor.post("/profile/keys", data={"note": "forged", "_xsrf": other}), 403, "XSRF")
    assert visitor.get("/profile").text.count("data-prefix=") == before
    assert_page(visitor.post("/logout"), 403)
    assert_page(visitor.get("/profile"), 200, 'id="profile-name">alice<')
    # No cookies at all (a new browser): refused as well.
    fresh = requests.post(pages_hub.url + "register", data={"name": "mallory", "password": PASSWORD,
                                                            "password2": PASSWORD}, timeout=15)
    assert_page(fresh, 403, "XSRF")
    # A POST to an unknown path is a 404, not a 403.
    assert_page(visitor.post("/no/such/form", data={}), 404)


def test_the_api_needs_no_xsrf_token(pages_hub):
    key = pages_hub.keys["alice"]
    api = {"Authorization": f"APIKey alice:{key}"}
    r = requests.post(pages_hub.url + "api/v1/keys/", json={"note": "api"}, headers=api, timeout=15)
    assert r.status_code == 201, r.text
    r = requests.post(pages_hub.url + "api/v1/canvases/", json={"python": ADD}, headers=api, timeout=15)
    assert r.status_code == 201, r.text
    canvas = r.json()["id"]
    # The seed's $.post from another origin: form-encoded, anonymous, no cookie, no token.
    r = requests.post(pages_hub.url + "api/v1/canvas_sessions/", data={"canvas": str(canvas)},
                      headers={"Origin": "http://seed-page.example"}, timeout=15)
    assert r.status_code == 201, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    session = r.json()
    r = requests.delete(session["self"], headers={"Origin": "http://seed-page.example"}, timeout=15)
    assert r.status_code == 204
    # Errors of the API stay JSON, unknown API paths included.
    for r in (requests.get(pages_hub.url + "api/v1/no-such-thing", timeout=15),
              requests.post(pages_hub.url + "api/v1/canvases/", json={}, timeout=15)):
        assert r.headers["Content-Type"].startswith("application/json")
        assert set(r.json()) >= {"status", "message"}


# -- 404 pages -------------------------------------------------------------------------------------


def test_unknown_pages_and_canvases_are_html_404(pages_hub):
    visitor = Visitor(pages_hub)
    assert_page(visitor.get("/no/such/page"), 404, "There is no page at /no/such/page")
    assert_page(visitor.get("/canvases/987654/"), 404, "There is no canvas 987654")
    assert_page(visitor.get("/canvases/not-a-number/"), 404, "There is no canvas not-a-number")
    assert_page(visitor.get("/canvases/%3Cscript%3E/"), 404, "There is no canvas &lt;script&gt;")
    # A deleted canvas is gone from its share page too.
    api = {"Authorization": f"APIKey alice:{pages_hub.keys['alice']}"}
    canvas = requests.post(pages_hub.url + "api/v1/canvases/", json={"python": ADD}, headers=api, timeout=15).json()
    assert_page(visitor.get(f"/canvases/{canvas['id']}/"), 200)
    assert requests.delete(canvas["self"], headers=api, timeout=15).status_code == 204
    assert_page(visitor.get(f"/canvases/{canvas['id']}/"), 404, f"There is no canvas {canvas['id']}")


# -- the cookie secret ----------------------------------------------------------------------------


def test_log_ins_survive_a_restart(hub):
    h = hub("--warm-pool-size", "0")
    visitor = Visitor(h)
    assert_redirect(visitor.register("frank"), "/")
    secret_file = os.path.join(h.data_dir, "cookie_secret")
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    with open(secret_file) as f:
        secret = f.read()
    assert len(bytes.fromhex(secret.strip())) == 32

    assert h.stop() == 0
    h.restart()  # on another port, maybe: cookies ignore ports
    assert_page(visitor.get("/profile"), 200, 'id="profile-name">frank<')
    with open(secret_file) as f:
        assert f.read() == secret


def test_a_configured_cookie_secret_is_used_and_checked(hub, tmp_path):
    secret = "ab" * 32
    h = hub("--warm-pool-size", "0", f"--LivePandasHub.cookie_secret={secret}")
    assert not os.path.exists(os.path.join(h.data_dir, "cookie_secret"))
    visitor = Visitor(h)
    assert_redirect(visitor.register("grace"), "/")
    assert_page(visitor.get("/profile"), 200, 'id="profile-name">grace<')
    # A cookie signed with another secret is no log-in.
    h.stop()
    h.args = ["--warm-pool-size", "0", "--LivePandasHub.cookie_secret=" + "cd" * 32]
    h.restart()
    assert_redirect(visitor.get("/profile"), "/login?next=%2Fprofile", 302)


def test_a_cookie_secret_file_open_to_others_is_refused(tmp_path):
    import subprocess

    from .conftest import hub_command

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "cookie_secret").write_text("ab" * 32 + "\n")
    os.chmod(data / "cookie_secret", 0o644)
    result = subprocess.run(hub_command("--port", "0", "--data-dir", str(data)), capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "readable by other users" in result.stderr
