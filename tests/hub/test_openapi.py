"""``GET /api/v1/openapi.json``, kept true against the real hub.

(a) the document is valid OpenAPI; (b) every route of the REST handlers has a path in it (with
the same methods) and every path a route; (c) real answers of a real hub to one table of
requests, covering every documented operation and every status it documents, validate against
the documented schemas and carry the documented headers.
"""

import base64
import re

import pytest
import tornado.web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from livepandas_ipython.hub.apihandlers import default_handlers

from .conftest import ADD

BASE = "urn:livepandas-hub-openapi"
METHODS = ("get", "post", "put", "patch", "delete", "options")


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A hub (one session per canvas at most, so 429 is reachable) and the objects the table needs."""
    from .conftest import _close_all, _make_factory

    hubs = []
    hub = _make_factory(tmp_path_factory, hubs)(
        "--warm-pool-size", "1", "--LivePandasHub.max_sessions_per_canvas=1",
        "--DashboardManager.max_dashboards_per_project=1", users=("alice",)
    )
    refs = {}
    for name in ("keep", "doomed", "session_json", "session_json_alias", "session_form", "session_multipart",
                 "session_form_alias", "session_multipart_alias", "capped", "doomed_s", "doomed_s_alias"):
        refs[name] = hub.upload("alice", name=name)["id"]
    refs["session"] = hub.new_session(refs["capped"])["id"]
    refs["doomed_session"] = hub.new_session(refs["doomed_s"])["id"]
    refs["doomed_session_alias"] = hub.new_session(refs["doomed_s_alias"])["id"]
    # Dashboards: one to read and stop, one filling the project "full" up to its cap.
    for name, project in (("dashboard", "p"), ("full_dashboard", "full")):
        r = hub.post(f"users/alice/projects/{project}/dashboards/", auth=(hub.keys["alice"], ""), json={})
        assert r.status_code == 201, r.text
        refs[name] = r.json()["id"]
    for name in ("prefix", "doomed_prefix"):
        r = hub.post("api/v1/keys/", user="alice", json={"note": name})
        assert r.status_code == 201, r.text
        refs[name] = r.json()["prefix"]
    yield hub, refs
    _close_all(hubs)


@pytest.fixture(scope="module")
def document(api):
    hub, _ = api
    r = hub.get("api/v1/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


# -- (a) a valid document -------------------------------------------------------------------------


def test_document_is_valid_openapi_naming_this_hub(api, document):
    hub, _ = api
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": hub.url.rstrip("/"), "description": "This hub."}]
    scheme = document["components"]["securitySchemes"]["APIKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "APIKey <user>:<key>" in scheme["description"]
    # anonymous operations say so; the others need the key
    assert document["paths"]["/api/v1/"]["get"]["security"] == []
    assert "security" not in document["paths"]["/api/v1/canvases/"]["post"]
    assert document["security"] == [{"APIKey": []}]


def test_servers_follow_the_host_the_client_used(api):
    hub, _ = api
    port = hub.url.rstrip("/").rsplit(":", 1)[1]
    document = hub.http.get(f"http://localhost:{port}/api/v1/openapi.json", timeout=15).json()
    assert document["servers"][0]["url"] == f"http://localhost:{port}"


# -- (b) routes and paths -------------------------------------------------------------------------


def _routes():
    """``{path template: set of methods}`` from the REST handlers' URL patterns."""
    routes = {}
    for spec in default_handlers:
        if isinstance(spec, tornado.web.URLSpec):
            pattern, handler = spec.regex.pattern.rstrip("$"), spec.handler_class
        else:
            pattern, handler = spec[0], spec[1]
        methods = {m for m in METHODS[:-1] if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}
        if getattr(handler, "cors", False):
            methods.add("options")
        for path in _expand(pattern):
            routes.setdefault(path, set()).update(methods)
    return routes


def _expand(pattern):
    """The concrete templates of a route regex: groups become ``{}``, ``[ab]`` each of a and b,
    an optional trailing slash a slash (the documented spelling)."""
    text = re.sub(r"\((?:\?P<\w+>)?[^()]*\)", "{}", pattern)
    if text.endswith("/?"):
        text = text[:-2] + "/"
    text = text.replace("\\.", ".")
    paths = [""]
    for part in re.split(r"(\[[^\]]+\])", text):
        choices = list(part[1:-1]) if part.startswith("[") else [part]
        paths = [path + choice for path in paths for choice in choices]
    for path in paths:
        assert not re.search(r"[\\()\[\]?*+^$|]", path), f"route {pattern!r} is too clever for this test"
    return paths


def _documented(document):
    paths = {}
    for path, item in document["paths"].items():
        template = re.sub(r"\{[^}]+\}", "{}", path)
        paths[template] = {m for m in METHODS if m in item}
    return paths


def test_every_route_is_documented_and_every_path_is_a_route(document):
    routes, documented = _routes(), _documented(document)
    assert sorted(routes) == sorted(documented)
    for path, methods in routes.items():
        assert documented[path] == methods, path


def test_expand_handles_the_route_spellings():
    assert _expand(r"/api/v1/canvas[_-]sessions/([^/]+)/?") == [
        "/api/v1/canvas_sessions/{}/",
        "/api/v1/canvas-sessions/{}/",
    ]
    assert _expand(r"/users/(?P<owner>[^/]+)/x") == ["/users/{}/x"]


# -- (c) real answers match the documented schemas ------------------------------------------------


class Ref(str):
    """A value the ``api`` fixture made (a canvas, session or key id), by name."""


BIG = "x" * (70 * 1024)  # over the 64 KiB limit of the small request bodies
HUGE_PYTHON = "def livepandas_f():\n    pass\n#" + "x" * (1024 * 1024 + 10)  # over max_python_size


def case(method, path, status, *, auth=True, params=None, expect=None, case_id=None, **kwargs):
    """One row: *method* on documented *path* with *params* filled in answers *status*."""
    label = case_id or f"{method} {path} {status}"
    return pytest.param(method, path, status, auth, params or {}, expect, kwargs, id=label)


PREFLIGHT = {"Origin": "http://pages.example", "Access-Control-Request-Method": "POST"}
DASHBOARDS = "/users/{owner}/projects/{project}/dashboards/"
DASHBOARD = DASHBOARDS + "{dashboard_id}/"
MINE = {"owner": "alice", "project": "p"}
NOT_MINE = {"owner": "nobody", "project": "p"}

TABLE = [
    # the hub itself
    case("GET", "/api/v1/", 200, auth=False),
    case("DELETE", "/api/v1/", 405, auth=False),
    case("GET", "/api/v1/openapi.json", 200, auth=False),
    case("OPTIONS", "/api/v1/openapi.json", 204, auth=False, headers=PREFLIGHT),
    # account
    case("GET", "/api/v1/user/", 200),
    case("GET", "/api/v1/user/", 401, auth=False),
    case("GET", "/api/v1/user/", 401, auth="wrong", case_id="GET user wrong key"),
    case("GET", "/api/v1/user/", 401, auth="malformed", case_id="GET user malformed header"),
    case("GET", "/api/v1/keys/", 200),
    case("GET", "/api/v1/keys/", 401, auth=False),
    case("POST", "/api/v1/keys/", 201, json={"note": "json"}),
    case("POST", "/api/v1/keys/", 201, data={"note": "form"}, case_id="POST keys form"),
    case("POST", "/api/v1/keys/", 201, files={"note": (None, "multipart")}, case_id="POST keys multipart"),
    case("POST", "/api/v1/keys/", 400, json={"note": 5}),
    case("POST", "/api/v1/keys/", 400, data=b"{not json", case_id="POST keys not json"),
    case("POST", "/api/v1/keys/", 401, auth=False, json={}),
    case("POST", "/api/v1/keys/", 413, json={"note": BIG}),
    case("GET", "/api/v1/keys/{prefix}/", 200, params={"prefix": Ref("prefix")}),
    case("GET", "/api/v1/keys/{prefix}/", 404, params={"prefix": "nope"}),
    case("GET", "/api/v1/keys/{prefix}/", 401, auth=False, params={"prefix": Ref("prefix")}),
    case("DELETE", "/api/v1/keys/{prefix}/", 204, params={"prefix": Ref("doomed_prefix")}),
    case("DELETE", "/api/v1/keys/{prefix}/", 404, params={"prefix": "nope"}),
    case("DELETE", "/api/v1/keys/{prefix}/", 401, auth=False, params={"prefix": "nope"}),
    # canvases
    case("GET", "/api/v1/canvases/", 200),
    case("GET", "/api/v1/canvases/", 401, auth=False),
    case(
        "POST", "/api/v1/canvases/", 201,
        json={"python": ADD, "html": "<p>v</p>", "static": {"a/b.txt": base64.b64encode(b"b").decode()}, "name": "n"},
    ),
    case(
        "POST", "/api/v1/canvases/", 400, json={"python": "x = 1\ndef livepandas_f(:\n    pass\n"},
        expect={"line": 2}, case_id="POST canvases syntax error",
    ),
    case("POST", "/api/v1/canvases/", 400, json={"python": "x = 1\n"}, case_id="POST canvases no function"),
    case("POST", "/api/v1/canvases/", 400, json={"python": ADD, "extra": 1}, case_id="POST canvases unknown field"),
    case("POST", "/api/v1/canvases/", 400, json={"python": ADD, "static": {"a": "%%"}}, case_id="POST canvases base64"),
    case("POST", "/api/v1/canvases/", 400, json={"python": ADD, "static": {"../a": ""}}, case_id="POST canvases path"),
    case("POST", "/api/v1/canvases/", 400, data=b"nope", case_id="POST canvases not json"),
    case("POST", "/api/v1/canvases/", 401, auth=False, json={"python": ADD}),
    case("POST", "/api/v1/canvases/", 413, json={"python": HUGE_PYTHON}),
    case("GET", "/api/v1/canvases/{canvas_id}/", 200, params={"canvas_id": Ref("keep")}),
    case("GET", "/api/v1/canvases/{canvas_id}/", 404, params={"canvas_id": 999999}),
    case("GET", "/api/v1/canvases/{canvas_id}/", 401, auth=False, params={"canvas_id": Ref("keep")}),
    *[
        row
        for method in ("PUT", "PATCH")
        for row in (
            case(method, "/api/v1/canvases/{canvas_id}/", 200, params={"canvas_id": Ref("keep")}, json={"name": "k"}),
            case(method, "/api/v1/canvases/{canvas_id}/", 400, params={"canvas_id": Ref("keep")}, json={}),
            case(method, "/api/v1/canvases/{canvas_id}/", 404, params={"canvas_id": 999999}, json={"name": "k"}),
            case(method, "/api/v1/canvases/{canvas_id}/", 401, auth=False, params={"canvas_id": Ref("keep")}, json={}),
            case(
                method, "/api/v1/canvases/{canvas_id}/", 413, params={"canvas_id": Ref("keep")},
                json={"python": HUGE_PYTHON},
            ),
        )
    ],
    case("DELETE", "/api/v1/canvases/{canvas_id}/", 204, params={"canvas_id": Ref("doomed")}),
    case("DELETE", "/api/v1/canvases/{canvas_id}/", 404, params={"canvas_id": 999999}),
    case("DELETE", "/api/v1/canvases/{canvas_id}/", 401, auth=False, params={"canvas_id": Ref("keep")}),
    # sessions, in both spellings
    *[
        row
        for spelling, alias in (("canvas_sessions", ""), ("canvas-sessions", "_alias"))
        for row in (
            case("POST", f"/api/v1/{spelling}/", 201, auth=False, json={"canvas": Ref(f"session_json{alias}")}),
            case(
                "POST", f"/api/v1/{spelling}/", 201, auth=False, data={"canvas": Ref(f"session_form{alias}")},
                case_id=f"POST {spelling} form",
            ),
            case(
                "POST", f"/api/v1/{spelling}/", 201, auth=False,
                files={"canvas": (None, Ref(f"session_multipart{alias}"))}, case_id=f"POST {spelling} multipart",
            ),
            case("POST", f"/api/v1/{spelling}/", 400, auth=False, json={"canvas": "x"}),
            case("POST", f"/api/v1/{spelling}/", 400, auth=False, json={}, case_id=f"POST {spelling} no canvas"),
            case("POST", f"/api/v1/{spelling}/", 404, auth=False, json={"canvas": 999999}),
            case("POST", f"/api/v1/{spelling}/", 413, auth=False, json={"canvas": 1, "pad": BIG}),
            case("POST", f"/api/v1/{spelling}/", 429, auth=False, json={"canvas": Ref("capped")}),
            case("OPTIONS", f"/api/v1/{spelling}/", 204, auth=False, headers=PREFLIGHT),
            case("GET", f"/api/v1/{spelling}/{{session_id}}/", 200, auth=False, params={"session_id": Ref("session")}),
            case("GET", f"/api/v1/{spelling}/{{session_id}}/", 404, auth=False, params={"session_id": "nope"}),
            case(
                "DELETE", f"/api/v1/{spelling}/{{session_id}}/", 204, auth=False,
                params={"session_id": Ref(f"doomed_session{alias}")},
            ),
            case("DELETE", f"/api/v1/{spelling}/{{session_id}}/", 404, auth=False, params={"session_id": "nope"}),
            case(
                "OPTIONS", f"/api/v1/{spelling}/{{session_id}}/", 204, auth=False,
                params={"session_id": Ref("session")}, headers=PREFLIGHT,
            ),
        )
    ],
    # Sense dashboards (the APIKey header here; HTTP Basic in test_dashboards.py)
    case("GET", DASHBOARDS, 200, params=MINE),
    case("GET", DASHBOARDS, 400, params={"owner": "alice", "project": "-bad"}),
    case("GET", DASHBOARDS, 401, auth=False, params=MINE),
    case("GET", DASHBOARDS, 404, params=NOT_MINE),
    case("POST", DASHBOARDS, 201, params={"owner": "alice", "project": "new"}, json={"startup_code": "x = 1"}),
    case("POST", DASHBOARDS, 400, params=MINE, json={"size": "huge"}),
    case("POST", DASHBOARDS, 401, auth=False, params=MINE, json={}),
    case("POST", DASHBOARDS, 404, params=NOT_MINE, json={}),
    case("POST", DASHBOARDS, 413, params=MINE, json={"startup_code": BIG}),
    case("POST", DASHBOARDS, 429, params={"owner": "alice", "project": "full"}, json={}),
    case("GET", DASHBOARD, 200, params={**MINE, "dashboard_id": Ref("dashboard")}),
    case("GET", DASHBOARD, 401, auth=False, params={**MINE, "dashboard_id": Ref("dashboard")}),
    case("GET", DASHBOARD, 404, params={**MINE, "dashboard_id": 999999}),
    case("PATCH", DASHBOARD, 200, params={**MINE, "dashboard_id": Ref("dashboard")}, json={"status": "stopped"}),
    case("PATCH", DASHBOARD, 400, params={**MINE, "dashboard_id": Ref("dashboard")}, json={"status": "running"}),
    case("PATCH", DASHBOARD, 401, auth=False, params={**MINE, "dashboard_id": Ref("dashboard")}, json={}),
    case("PATCH", DASHBOARD, 404, params={**MINE, "dashboard_id": 999999}, json={"status": "stopped"}),
    case(
        "PATCH", DASHBOARD, 413, params={**MINE, "dashboard_id": Ref("dashboard")},
        json={"status": "stopped", "pad": BIG},
    ),
]


def _resolve(value, refs):
    if isinstance(value, Ref):
        return str(refs[value])
    if isinstance(value, dict):
        return {k: _resolve(v, refs) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_resolve(v, refs) for v in value)
    if isinstance(value, list):
        return [_resolve(v, refs) for v in value]
    return value


def _json_resolve(value, refs):
    """Like _resolve, but ids in JSON bodies stay integers where the fixture made integers."""
    if isinstance(value, Ref):
        return refs[value]
    if isinstance(value, dict):
        return {k: _json_resolve(v, refs) for k, v in value.items()}
    return value


def _absolute_refs(schema):
    """*schema* with its document-local ``$ref``s made absolute (so they resolve in the registry)."""
    if isinstance(schema, dict):
        return {
            k: (BASE + v if k == "$ref" and v.startswith("#") else _absolute_refs(v)) for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_absolute_refs(v) for v in schema]
    return schema


def _deref(document, node):
    """Follow a ``#/...`` reference of the document (responses refer to shared ones)."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@pytest.mark.parametrize("method, path, status, auth, params, expect, kwargs", TABLE)
def test_answers_match_the_documented_schemas(api, document, method, path, status, auth, params, expect, kwargs):
    hub, refs = api
    url = hub.url.rstrip("/") + path.format(**_resolve(params, refs))
    headers = dict(kwargs.pop("headers", {}))
    if auth is True:
        headers.update(hub.auth("alice"))
    elif auth == "wrong":
        headers["Authorization"] = "APIKey alice:not-the-key"
    elif auth == "malformed":
        headers["Authorization"] = "APIKey alice"
    if "json" in kwargs:
        kwargs["json"] = _json_resolve(kwargs["json"], refs)
    kwargs = _resolve(kwargs, refs)
    r = hub.http.request(method, url, headers=headers, timeout=30, **kwargs)
    assert r.status_code == status, r.text

    operation = document["paths"][path].get(method.lower())
    if operation is None:  # a method the path does not take: 405 in the common error shape
        assert status == 405
        response = _deref(document, {"$ref": "#/components/responses/Error"})
    else:
        responses = operation["responses"]
        assert str(status) in responses, f"{status} is not documented for {method} {path}"
        response = _deref(document, responses[str(status)])
    if "content" in response:
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        schema = _absolute_refs(response["content"]["application/json"]["schema"])
        registry = Registry().with_resource(BASE, Resource.from_contents(document, default_specification=DRAFT202012))
        Draft202012Validator(schema, registry=registry).validate(body)
        for key, value in (expect or {}).items():
            assert body[key] == value
    else:
        assert r.content == b""
    for header in response.get("headers", {}):
        assert header in r.headers, f"{method} {path} {status}: no {header} header"


def _cases():
    return {(p.values[0].lower(), p.values[1], str(p.values[2])) for p in TABLE}


def test_the_table_covers_every_documented_operation_and_status(document):
    cases = _cases()
    missing = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            for status in item[method]["responses"]:
                if status != "default" and (method, path, status) not in cases:
                    missing.append(f"{method.upper()} {path} {status}")
    assert missing == []
