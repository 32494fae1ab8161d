"""Authentication and authorization: API keys over REST, and every endpoint against another user."""

import base64
import os

import pytest

from livepandas_ipython.hub import auth
from livepandas_ipython.hub.db import Database
from livepandas_ipython.hub.errors import Unauthorized

from .conftest import ADD

ACCOUNT_ENDPOINTS = [
    ("GET", "api/v1/user/"),
    ("GET", "api/v1/keys/"),
    ("POST", "api/v1/keys/"),
    ("GET", "api/v1/keys/{prefix}/"),
    ("DELETE", "api/v1/keys/{prefix}/"),
    ("GET", "api/v1/canvases/"),
    ("POST", "api/v1/canvases/"),
    ("GET", "api/v1/canvases/{canvas}/"),
    ("PUT", "api/v1/canvases/{canvas}/"),
    ("PATCH", "api/v1/canvases/{canvas}/"),
    ("DELETE", "api/v1/canvases/{canvas}/"),
]


@pytest.fixture(scope="module")
def alices(shared_hub):
    """One of alice's canvases and a spare key of hers (prefix)."""
    canvas = shared_hub.upload("alice", name="private")
    r = shared_hub.post("api/v1/keys/", user="alice", json={"note": "spare"})
    return {"canvas": canvas["id"], "prefix": r.json()["prefix"]}


def fill(path, alices):
    return path.format(**alices)


@pytest.mark.parametrize("method, path", ACCOUNT_ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "APIKey alice",
        "APIKey alice:",
        "APIKey alice:wrong-key-wrong-key-wrong-key",
        "Bearer abc",
        "Basic " + base64.b64encode(b"alice:password").decode(),
        "Basic !!!",
    ],
    ids=["none", "no-colon", "empty-key", "wrong-key", "bearer", "basic", "bad-basic"],
)
def test_account_endpoints_need_a_valid_api_key(shared_hub, alices, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = shared_hub.request(method, fill(path, alices), headers=headers, json={"python": ADD})
    assert r.status_code == 401, r.text
    assert r.json()["status"] == 401 and r.json()["message"]
    assert r.headers["WWW-Authenticate"].startswith("APIKey")


@pytest.mark.parametrize("method, path", [e for e in ACCOUNT_ENDPOINTS if "{" in e[1]])
def test_another_users_objects_are_404(shared_hub, alices, method, path):
    r = shared_hub.request(method, fill(path, alices), user="bob", json={"python": ADD})
    assert r.status_code == 404, r.text
    assert "no " in r.json()["message"]
    # ...and untouched: alice still has them, her spare key still works
    assert shared_hub.get(f"api/v1/canvases/{alices['canvas']}/", user="alice").json()["python"] == ADD
    assert shared_hub.get(f"api/v1/keys/{alices['prefix']}/", user="alice").status_code == 200


def test_another_users_key_under_my_name_is_refused(shared_hub, alices):
    r = shared_hub.get("api/v1/canvases/", headers={"Authorization": f"APIKey alice:{shared_hub.keys['bob']}"})
    assert r.status_code == 401


def test_lists_show_only_ones_own(shared_hub, alices):
    bobs = shared_hub.get("api/v1/canvases/", user="bob").json()
    assert alices["canvas"] not in [c["id"] for c in bobs]
    assert alices["prefix"] not in [k["prefix"] for k in shared_hub.get("api/v1/keys/", user="bob").json()]


def test_anyone_may_start_a_session_on_a_canvas_by_id(shared_hub, alices):
    session = shared_hub.new_session(alices["canvas"])  # no credentials at all
    assert shared_hub.delete(f"api/v1/canvas_sessions/{session['id']}/").status_code == 204


def test_user_endpoint_names_the_caller(shared_hub):
    me = shared_hub.get("api/v1/user/", user="alice").json()
    assert me["name"] == "alice"
    assert me["canvases"] == shared_hub.url + "api/v1/canvases/"


def test_keys_can_be_created_listed_and_revoked(shared_hub):
    r = shared_hub.post("api/v1/keys/", user="bob", data={"note": "laptop"})  # a form works too
    assert r.status_code == 201, r.text
    created = r.json()
    key, prefix = created["key"], created["prefix"]
    assert key.startswith(prefix) and len(prefix) == auth.PREFIX_LENGTH and len(key) >= 40
    assert created["note"] == "laptop"
    assert r.headers["Location"] == created["self"]

    listed = shared_hub.get("api/v1/keys/", user="bob").json()
    assert prefix in [k["prefix"] for k in listed]
    assert all("key" not in k and "hash" not in k for k in listed)
    assert shared_hub.get(f"api/v1/keys/{prefix}/", user="bob").json()["note"] == "laptop"

    new_auth = {"Authorization": f"APIKey bob:{key}"}
    assert shared_hub.get("api/v1/user/", headers=new_auth).json()["name"] == "bob"
    assert shared_hub.get("api/v1/keys/", headers=new_auth).json()  # last_used is recorded
    used = shared_hub.get(f"api/v1/keys/{prefix}/", user="bob").json()
    assert used["last_used"] is not None

    # a key can revoke itself; it stops working at once
    assert shared_hub.delete(f"api/v1/keys/{prefix}/", headers=new_auth).status_code == 204
    assert shared_hub.get("api/v1/user/", headers=new_auth).status_code == 401
    assert prefix not in [k["prefix"] for k in shared_hub.get("api/v1/keys/", user="bob").json()]
    assert shared_hub.delete(f"api/v1/keys/{prefix}/", user="bob").status_code == 404
    # bob's first key is unaffected
    assert shared_hub.get("api/v1/user/", user="bob").status_code == 200


def test_key_note_is_validated(shared_hub):
    r = shared_hub.post("api/v1/keys/", user="bob", json={"note": "x" * 201})
    assert r.status_code == 400
    r = shared_hub.post("api/v1/keys/", user="bob", json={"note": 5})
    assert r.status_code == 400


def test_keys_are_stored_only_as_hashes(shared_hub):
    key = shared_hub.keys["alice"]
    for name in ("hub.sqlite", "hub.sqlite-wal"):
        path = os.path.join(shared_hub.data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                assert key.encode() not in f.read()


# -- the helpers, in process ----------------------------------------------------------------------


@pytest.fixture
def authenticator(tmp_path):
    db = Database(str(tmp_path / "hub.sqlite"))
    yield auth.Authenticator(db)
    db.close()


def test_basic_credentials_password_key_as_user_or_key_as_password(authenticator):
    user, key = authenticator.create_user("carol", "correct horse")
    assert authenticator.check_basic("carol", "correct horse")["id"] == user["id"]
    assert authenticator.check_basic("carol", "wrong") is None
    assert authenticator.check_basic(key, "")["name"] == "carol"  # the key alone, as the user name
    assert authenticator.check_basic("carol", key)["name"] == "carol"
    assert authenticator.check_basic("nobody", "correct horse") is None
    assert authenticator.check_basic("x" * 50, "") is None
    nopass, _ = authenticator.create_user("dave")
    assert authenticator.check_basic("dave", "") is None
    assert authenticator.check_basic("dave", "anything") is None


def test_parse_authorization():
    assert auth.parse_authorization(None) is None
    assert auth.parse_authorization("APIKey a:b:c") == ("apikey", "a", "b:c")
    basic = "Basic " + base64.b64encode("u:p:q".encode()).decode()
    assert auth.parse_authorization(basic) == ("basic", "u", "p:q")
    for bad in ("APIKey nocolon", "Token x", "Basic " + base64.b64encode(b"nocolon").decode(), "Basic %%%"):
        with pytest.raises(Unauthorized):
            auth.parse_authorization(bad)


def test_hashes_are_salted_and_checked():
    key = auth.new_key()
    one, two = auth.hash_key(key), auth.hash_key(key)
    assert one != two and key not in one
    assert auth.check_key(key, one) and auth.check_key(key, two)
    assert not auth.check_key(key + "x", one)
    assert not auth.check_key(key, "md5$x$y") and not auth.check_key(key, None)
    stored = auth.hash_password("pw")
    assert stored.startswith("scrypt$") and "pw" not in stored.split("$", 4)[-1]
    assert auth.check_password("pw", stored) and not auth.check_password("pW", stored)
    assert not auth.check_password("pw", None) and not auth.check_password("pw", "scrypt$bad")


def test_user_names_are_validated(authenticator):
    from livepandas_ipython.hub.errors import BadRequest, Conflict

    for bad in ("", "a:b", "-lead", "a b", "x" * 65, "ü", "name\n"):
        with pytest.raises(BadRequest):
            authenticator.create_user(bad)
    authenticator.create_user("erin")
    with pytest.raises(Conflict):
        authenticator.create_user("erin")
