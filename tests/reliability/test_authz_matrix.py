"""Authorization matrix: no user reaches another user's canvases, keys, dashboards or sessions.

Two users, ``alice`` and ``bob``, each own a canvas, a second API key, a running session and a
dashboard in a project both of them name ``shared``. Every endpoint that takes an object is
tried by each user on the *other* user's object: the answer is the ``404`` the contract gives
("as if it did not exist"), with the JSON error body, and the object is untouched. The same
rows with the owner's own objects succeed, so each row is known to reach the handler. Listings
show only the caller's objects; missing, malformed or Basic credentials on the APIKey endpoints
answer ``401``.

Sessions are anonymous by design (the id is the capability): no listing or model reveals a
session id, so one user can reach another's session only by being given its id.
"""

import json

import pytest
import requests
from hub.conftest import wait_until

from .support import TIMEOUT

USERS = ("alice", "bob")
PROJECT = "shared"
START_TIMEOUT = 60  # a deadline for a dashboard kernel to start on a loaded machine


def other(user):
    return USERS[1 - USERS.index(user)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One hub with alice's and bob's objects; ``(hub, {user: {"canvas", "key", "session", "dashboard"}})``."""
    from hub.conftest import _close_all, _make_factory

    hubs = []
    h = _make_factory(tmp_path_factory, hubs)("--warm-pool-size", "0", users=USERS)
    try:
        objects = {}
        for user in USERS:
            canvas = h.upload(user, name=f"{user}'s")
            key = h.post("api/v1/keys/", user=user, json={"note": f"{user} second"}).json()
            session = h.new_session(canvas["id"])
            r = h.post(dashboards(user), auth=(h.keys[user], ""), json={"startup_code": f"owner = {user!r}"})
            assert r.status_code == 201, r.text
            objects[user] = {"canvas": canvas, "key": key, "session": session, "dashboard": r.json()}
        for user in USERS:
            dashboard = objects[user]["dashboard"]
            wait_until(
                lambda: h.get(dashboards(user, dashboard["id"]), user=user).json()["status"] != "starting",
                timeout=START_TIMEOUT,
                message="the dashboards to start",
            )
        yield h, objects
    finally:
        _close_all(hubs)


def dashboards(owner, dashboard_id=None, project=PROJECT):
    base = f"users/{owner}/projects/{project}/dashboards/"
    return base if dashboard_id is None else f"{base}{dashboard_id}"


# Each row: (name, method, path(objects of the target user, target name), JSON body or None,
# the owner's success status). Destructive rows come last, and run for the other user first.
ROWS = [
    ("read canvas", "GET", lambda o, u: f"api/v1/canvases/{o['canvas']['id']}/", None, 200),
    ("replace canvas", "PUT", lambda o, u: f"api/v1/canvases/{o['canvas']['id']}/",
     {"name": "renamed"}, 200),
    ("patch canvas", "PATCH", lambda o, u: f"api/v1/canvases/{o['canvas']['id']}/", {"html": "<p>x</p>"}, 200),
    ("read key", "GET", lambda o, u: f"api/v1/keys/{o['key']['prefix']}/", None, 200),
    ("list dashboards", "GET", lambda o, u: dashboards(u), None, 200),
    ("read dashboard", "GET", lambda o, u: dashboards(u, o["dashboard"]["id"]), None, 200),
    ("start dashboard", "POST", lambda o, u: dashboards(u), {"startup_code": "1"}, 201),
    ("stop dashboard", "PATCH", lambda o, u: dashboards(u, o["dashboard"]["id"]), {"status": "stopped"}, 200),
    ("revoke key", "DELETE", lambda o, u: f"api/v1/keys/{o['key']['prefix']}/", None, 204),
    ("delete canvas", "DELETE", lambda o, u: f"api/v1/canvases/{o['canvas']['id']}/", None, 204),
]


def send(h, user, method, path, body):
    """A request as *user*: APIKey credentials, or (for dashboards) Basic with the API key."""
    kwargs = {"json": body} if body is not None else {}
    if path.startswith("users/"):
        return h.request(method, path, auth=(h.keys[user], ""), **kwargs)
    return h.request(method, path, user=user, **kwargs)


def snapshot(h, user, own):
    """What *user* sees of their own objects: canvas, key and dashboards (as the owner reads them)."""
    canvas = send(h, user, "GET", f"api/v1/canvases/{own['canvas']['id']}/", None)
    key = send(h, user, "GET", f"api/v1/keys/{own['key']['prefix']}/", None)
    listed = send(h, user, "GET", dashboards(user), None).json()
    return (
        canvas.status_code,
        canvas.json() if canvas.status_code == 200 else None,
        key.status_code,
        [(d["id"], d["status"]) for d in listed],
    )


def assert_404(r):
    assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
    error = r.json()
    assert error["status"] == 404 and isinstance(error["message"], str) and error["message"], error


def test_every_endpoint_on_the_other_users_objects_is_404_and_the_owners_own_succeed(world):
    h, objects = world
    stopped = []
    for name, method, make_path, body, owner_status in ROWS:
        before = {user: snapshot(h, user, objects[user]) for user in USERS}
        for user in USERS:
            target = other(user)
            assert_404(send(h, user, method, make_path(objects[target], target), body))
        assert {user: snapshot(h, user, objects[user]) for user in USERS} == before, name
        for user in USERS:
            r = send(h, user, method, make_path(objects[user], user), body)
            assert r.status_code == owner_status, (name, user, r.status_code, r.text)
            if name == "start dashboard":
                stopped.append((user, r.json()["id"]))
    # Dashboards started by the matrix are stopped again.
    for user, dashboard_id in stopped:
        r = send(h, user, "PATCH", dashboards(user, dashboard_id), {"status": "stopped"})
        assert r.status_code == 200, r.text


def test_a_users_own_path_with_the_other_users_dashboard_id_is_404(world):
    h, objects = world
    for user in USERS:
        theirs = objects[other(user)]["dashboard"]["id"]
        for method, body in (("GET", None), ("PATCH", {"status": "stopped"})):
            assert_404(send(h, user, method, dashboards(user, theirs), body))
        assert theirs not in [d["id"] for d in send(h, user, "GET", dashboards(user), None).json()]


def test_listings_show_only_the_callers_objects_and_no_session_ids(world):
    h, objects = world
    for user in USERS:
        theirs = objects[other(user)]
        canvases = send(h, user, "GET", "api/v1/canvases/", None).json()
        assert theirs["canvas"]["id"] not in [c["id"] for c in canvases]
        keys = send(h, user, "GET", "api/v1/keys/", None).json()
        assert theirs["key"]["prefix"] not in [k["prefix"] for k in keys]
        assert send(h, user, "GET", "api/v1/user/", None).json()["name"] == user
        everything = json.dumps([canvases, keys, send(h, user, "GET", dashboards(user), None).json()])
        for owner in USERS:
            assert objects[owner]["session"]["id"] not in everything


def test_the_other_users_credentials_never_pass_for_this_user(world):
    h, objects = world
    for user in USERS:
        target = other(user)
        mixed = [
            {"Authorization": f"APIKey {target}:{h.keys[user]}"},  # my key under their name
            {"Authorization": f"APIKey {target}:{objects[user]['key']['key']}"},
        ]
        for headers in mixed:
            r = h.get("api/v1/user/", headers=headers)
            assert r.status_code == 401, r.text
            r = h.get(dashboards(target), headers=headers)
            assert r.status_code == 401, r.text
        r = h.get(dashboards(target), auth=(target, h.keys[user]))  # my key as their password
        assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "APIKey alice"},
        {"Authorization": "APIKey alice:"},
        {"Authorization": "APIKey :nothing"},
        {"Authorization": "Bearer x"},
        {"Authorization": "Basic YWxpY2U6"},  # alice with an empty password: Basic is not for this API
        {"Authorization": "APIKey alice:' OR 1=1 --"},
    ],
    ids=["none", "no-key", "empty-key", "no-user", "bearer", "basic", "sql"],
)
def test_missing_or_malformed_credentials_are_401_everywhere(world, headers):
    h, objects = world
    canvas = objects["alice"]["canvas"]["id"]
    for method, path in [
        ("GET", "api/v1/user/"),
        ("GET", "api/v1/canvases/"),
        ("POST", "api/v1/canvases/"),
        ("GET", f"api/v1/canvases/{canvas}/"),
        ("DELETE", f"api/v1/canvases/{canvas}/"),
        ("GET", "api/v1/keys/"),
        ("POST", "api/v1/keys/"),
        ("GET", dashboards("alice")),
    ]:
        r = h.request(method, path, headers=headers)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers.get("WWW-Authenticate"), (method, path)
        assert r.json()["status"] == 401


def test_sessions_answer_anyone_holding_the_id_and_nothing_else(world):
    h, objects = world
    session = objects["alice"]["session"]
    # The id is the capability: no credentials needed, and no other user can list it.
    r = h.get(f"api/v1/canvas_sessions/{session['id']}/", user="bob")
    assert r.status_code == 200 and r.json()["canvas"] == objects["alice"]["canvas"]["id"]
    near_misses = [session["id"][:-1], session["id"] + "x", session["id"].upper(), "' OR 1=1 --"]
    for guess in near_misses:
        r = h.get(f"api/v1/canvas_sessions/{requests.utils.quote(guess, safe='')}/")
        assert r.status_code == 404, (guess, r.text)
    assert h.get("api/v1/canvas_sessions/", timeout=TIMEOUT).status_code == 405
