"""The canvas API of a real hub: upload, list, read, update, delete, and every error."""

import base64
import os

import pytest
import requests

from livepandas_ipython.hub.canvases import CanvasStore, collect_functions, validate_upload
from livepandas_ipython.hub.db import Database
from livepandas_ipython.hub.errors import BadRequest, InvalidCanvas, TooLarge

from .conftest import ADD

def B64(data):
    return base64.b64encode(data).decode()


def test_upload_answers_201_with_id_functions_and_self(shared_hub):
    r = shared_hub.post(
        "api/v1/canvases/", user="alice", json={"python": ADD, "html": "<h1>hi</h1>", "name": "adder"}
    )
    assert r.status_code == 201, r.text
    model = r.json()
    assert isinstance(model["id"], int)
    assert model["functions"] == ["add", "pid"]  # helper() is not published
    assert model["signatures"]["add"] == "add(x, y)"
    assert model["name"] == "adder"
    assert model["owner"] == "alice"
    assert model["self"] == f"{shared_hub.url}api/v1/canvases/{model['id']}/"
    assert r.headers["Location"] == model["self"]
    assert r.headers["Content-Type"].startswith("application/json")
    assert model["created"].endswith("Z")


def test_upload_writes_the_files_a_worker_serves(shared_hub):
    model = shared_hub.upload(
        "alice", html="<p>view</p>", static={"css/site.css": B64(b"body{}"), "logo.bin": B64(b"\x00\x01")}
    )
    directory = os.path.join(shared_hub.data_dir, "canvases", str(model["id"]))
    assert sorted(os.listdir(directory)) == ["code.py", "static", "view.html"]
    with open(os.path.join(directory, "code.py"), encoding="utf-8") as f:
        assert f.read() == ADD
    with open(os.path.join(directory, "static", "logo.bin"), "rb") as f:
        assert f.read() == b"\x00\x01"
    got = shared_hub.get(model["self"].replace(shared_hub.url, ""), user="alice").json()
    assert got["python"] == ADD
    assert got["html"] == "<p>view</p>"
    assert got["static"] == ["css/site.css", "logo.bin"]


def test_list_shows_only_the_callers_canvases(shared_hub):
    mine = shared_hub.upload("bob", name="bobs")
    listed = shared_hub.get("api/v1/canvases/", user="bob").json()
    assert mine["id"] in [c["id"] for c in listed]
    assert all(c["owner"] == "bob" for c in listed)
    alices = shared_hub.get("api/v1/canvases", user="alice").json()  # no trailing slash works too
    assert mine["id"] not in [c["id"] for c in alices]
    assert "python" not in listed[0]  # the list is light; GET one for the contents


def test_put_replaces_given_fields_and_keeps_the_rest(shared_hub):
    model = shared_hub.upload("alice", html="<p>old</p>", static={"a.txt": B64(b"a")}, name="before")
    path = f"api/v1/canvases/{model['id']}/"
    new_code = "def livepandas_mul(x, y):\n    return x * y\n"
    r = shared_hub.put(path, user="alice", json={"python": new_code})
    assert r.status_code == 200, r.text
    assert r.json()["functions"] == ["mul"]
    assert r.json()["name"] == "before"
    got = shared_hub.get(path, user="alice").json()
    assert (got["python"], got["html"], got["static"]) == (new_code, "<p>old</p>", ["a.txt"])

    r = shared_hub.put(path, user="alice", json={"html": None, "static": {}, "name": "after"})
    assert r.status_code == 200, r.text
    got = shared_hub.get(path, user="alice").json()
    assert (got["python"], got["html"], got["static"], got["name"]) == (new_code, None, [], "after")
    assert got["updated"] >= got["created"]


def test_delete_removes_canvas_and_files(shared_hub):
    model = shared_hub.upload("alice")
    path = f"api/v1/canvases/{model['id']}/"
    r = shared_hub.delete(path, user="alice")
    assert r.status_code == 204 and r.content == b""
    assert shared_hub.get(path, user="alice").status_code == 404
    assert not os.path.exists(os.path.join(shared_hub.data_dir, "canvases", str(model["id"])))
    assert shared_hub.delete(path, user="alice").status_code == 404
    # ids are never reused
    assert shared_hub.upload("alice")["id"] > model["id"]


# -- errors ---------------------------------------------------------------------------------------


def error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_syntax_error_is_400_naming_the_line(shared_hub):
    r = shared_hub.post("api/v1/canvases/", user="alice", json={"python": "x = 1\n\ndef livepandas_f(:\n    pass\n"})
    body = error(r, 400)
    assert body["line"] == 3
    assert "SyntaxError" in body["message"] and "line 3" in body["message"]


def test_compile_time_error_is_400_too(shared_hub):
    # parses, but does not compile: caught without running anything
    r = shared_hub.post("api/v1/canvases/", user="alice", json={"python": "def livepandas_f():\n    pass\nreturn 1\n"})
    assert error(r, 400)["line"] == 3


def test_the_hub_never_runs_uploaded_code(shared_hub, tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\ndef livepandas_f():\n    return 1\n"
    assert shared_hub.upload("alice", python=code)["functions"] == ["f"]
    assert not marker.exists()


def test_no_published_function_is_400(shared_hub):
    body = error(shared_hub.post("api/v1/canvases/", user="alice", json={"python": "def helper():\n    pass\n"}), 400)
    assert "livepandas_<name>" in body["message"]
    # private and non-top-level names don't count
    code = "def livepandas__private():\n    pass\nclass K:\n    def livepandas_m(self):\n        pass\n"
    error(shared_hub.post("api/v1/canvases/", user="alice", json={"python": code}), 400)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"html": "<p>"}, "missing field 'python'"),
        ({"python": 3}, "'python' must be a string"),
        ({"python": ADD, "html": 5}, "'html' must be a string"),
        ({"python": ADD, "name": ""}, "'name'"),
        ({"python": ADD, "extra": 1}, "unknown field"),
        ({"python": ADD, "static": ["a"]}, "'static' must be an object"),
        ({"python": ADD, "static": {"../x": "YQ=="}}, "'..'"),
        ({"python": ADD, "static": {"a/../../x": "YQ=="}}, "'..'"),
        ({"python": ADD, "static": {"/etc/x": "YQ=="}}, "absolute"),
        ({"python": ADD, "static": {"a//b": "YQ=="}}, "empty"),
        ({"python": ADD, "static": {"a\\b": "YQ=="}}, "backslash"),
        ({"python": ADD, "static": {"a": "not base64!"}}, "base64"),
        ({"python": ADD, "static": {"a": "YQ"}}, "base64"),  # missing padding: strict
        ({"python": ADD, "static": {"a": 1}}, "base64"),
        ({"python": ADD, "static": {"a": "YQ==", "a/b": "YQ=="}}, "both a file and a directory"),
    ],
)
def test_bad_upload_is_400(shared_hub, body, fragment):
    assert fragment in error(shared_hub.post("api/v1/canvases/", user="alice", json=body), 400)["message"]


def test_body_that_is_not_json_is_400(shared_hub):
    json_type = {"Content-Type": "application/json"}
    r = shared_hub.post("api/v1/canvases/", user="alice", data=b"{not json", headers=json_type)
    assert "not valid JSON" in error(r, 400)["message"]
    error(shared_hub.post("api/v1/canvases/", user="alice", json=[1, 2]), 400)
    error(shared_hub.post("api/v1/canvases/", user="alice"), 400)


def test_put_errors(shared_hub):
    model = shared_hub.upload("alice")
    path = f"api/v1/canvases/{model['id']}/"
    error(shared_hub.put(path, user="alice", json={}), 400)
    error(shared_hub.put(path, user="alice", json={"python": "def f(:"}), 400)
    error(shared_hub.put(path, user="alice", json={"static": {"../x": "YQ=="}}), 400)
    assert shared_hub.get(path, user="alice").json()["python"] == ADD  # nothing changed
    error(shared_hub.put("api/v1/canvases/999999/", user="alice", json={"python": ADD}), 404)
    error(shared_hub.get("api/v1/canvases/not-an-id/", user="alice"), 404)


def test_size_limits_are_413(hub):
    h = hub(
        "--LivePandasHub.max_python_size=100",
        "--LivePandasHub.max_html_size=10",
        "--LivePandasHub.max_static_size=4",
        "--LivePandasHub.max_static_files=2",
        "--LivePandasHub.max_body_size=2000",
        "--warm-pool-size=0",
        users=["alice"],
    )
    small = "def livepandas_f():\n    return 1\n"
    post = lambda body: h.post("api/v1/canvases/", user="alice", json=body)  # noqa: E731
    assert "max_python_size" not in error(post({"python": small + "#" * 100}), 413)["message"]
    error(post({"python": small, "html": "x" * 11}), 413)
    error(post({"python": small, "static": {"a": B64(b"12345")}}), 413)
    error(post({"python": small, "static": {"a": B64(b"1"), "b": B64(b"2"), "c": B64(b"3")}}), 413)
    # over max_body_size: read and discarded, answered with the JSON error
    error(post({"python": small, "html": "x" * 3000}), 413)
    # far over it: refused before reading
    error(h.post("api/v1/canvases/", user="alice", data=b"x" * 100_000), 413)
    assert h.post("api/v1/canvases/", user="alice", json={"python": small}).status_code == 201
    # unauthenticated uploads are refused before their body is read
    error(h.post("api/v1/canvases/", data=b"x" * 1000), 401)


def test_unknown_paths_and_methods_answer_json(shared_hub):
    body = error(shared_hub.get("api/v1/nothing-here"), 404)
    assert "nothing-here" in body["message"]
    error(shared_hub.get("api/no/such/page"), 404)
    # Outside the API, an unknown path is an HTML page (see test_pages.py).
    page = shared_hub.get("no/such/page")
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    error(shared_hub.request("PATCH", "api/v1/keys/", user="alice", json={}), 405)


def test_api_root_is_anonymous(shared_hub):
    info = shared_hub.get("api/v1/").json()
    assert info["canvases"] == shared_hub.url + "api/v1/canvases/"
    assert info["version"]


# -- validation without a hub --------------------------------------------------------------------


def test_collect_functions_reads_definitions_without_running():
    code = (
        "import os\n"
        "if os.environ.get('X'):\n"
        "    def livepandas_cond(a, *, b=2):\n        'Doc.'\n        return a\n"
        "async def livepandas_later(n: int = 1):\n    return n\n"
        "livepandas_alias = len\n"
        "def livepandas_():\n    pass\n"
    )
    functions = collect_functions(code)
    assert [f["name"] for f in functions] == ["alias", "cond", "later"]
    assert functions[1] == {"name": "cond", "signature": "cond(a, *, b=2)", "doc": "Doc."}
    assert functions[2]["signature"] == "later(n: int=1)"


@pytest.mark.parametrize(
    "code, exc",
    [
        ("def livepandas_f(:\n", InvalidCanvas),
        ("x = 1\x00\ndef livepandas_f(): pass\n", InvalidCanvas),
        ("(" * 1000 + ")" * 1000 + "\ndef livepandas_f(): pass\n", InvalidCanvas),
        ("", InvalidCanvas),
    ],
)
def test_collect_functions_rejects(code, exc):
    with pytest.raises(exc):
        collect_functions(code)


def test_validate_upload_partial_and_limits():
    upload = validate_upload({"html": None}, partial=True)
    assert upload.html_given and upload.html is None and upload.python is None
    with pytest.raises(BadRequest):
        validate_upload({}, partial=True)
    with pytest.raises(TooLarge):
        from livepandas_ipython.hub.canvases import Limits

        validate_upload({"python": ADD}, Limits(python=10))


def test_new_sessions_get_the_updated_code(shared_hub):
    model = shared_hub.upload("alice")
    old = shared_hub.wait_running(shared_hub.new_session(model["id"]))
    times = "def livepandas_add(x, y):\n    return x * y\n"
    assert shared_hub.put(f"api/v1/canvases/{model['id']}/", user="alice", json={"python": times}).status_code == 200
    new = shared_hub.wait_running(shared_hub.new_session(model["id"]))

    def call(session):
        return requests.get(f"http://{session['socket']}/add", params={"kwargs": '{"x": 3, "y": 4}'}, timeout=5)

    assert call(new).json() == {"result": 12}
    assert call(old).json() == {"result": 7}  # a running session keeps the code it started with
    for session in (old, new):
        shared_hub.delete(f"api/v1/canvas_sessions/{session['id']}/")


def test_recover_repairs_an_interrupted_swap(tmp_path):
    db = Database(str(tmp_path / "hub.sqlite"))
    try:
        user = db.add_user("u")
        kept = db.add_canvas(user, "kept", [])
        store = CanvasStore(db, str(tmp_path / "canvases"))
        root = tmp_path / "canvases"
        (root / f".old-{kept}-abcd").mkdir()  # died between the two renames
        (root / f".old-{kept}-abcd" / "code.py").write_text("x = 1\n")
        (root / ".tmp-1234").mkdir()  # died while writing
        (root / "999").mkdir()  # a canvas without a row
        store.recover()
        assert sorted(os.listdir(root)) == [str(kept)]
        assert (root / str(kept) / "code.py").read_text() == "x = 1\n"
    finally:
        db.close()
