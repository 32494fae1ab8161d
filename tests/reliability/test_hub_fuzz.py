"""Schema-driven fuzzing of the hub's REST API (schemathesis), from its own OpenAPI document.

One hub serves the module. Every operation of ``GET /api/v1/openapi.json`` is fuzzed with
schemathesis's generated cases, valid ones (positive) and invalid ones (negative: wrong types,
missing fields, bad formats), sent with the credentials of a user ``fuzz``. Every answer must:

- never be a 5xx (``not_a_server_error``): input alone never makes the hub fail;
- conform to the document: its status and body schema (``response_schema_conformance``) and
  content type (``content_type_conformance``);
- when it is an error, be the JSON ``{"status": <the status>, "message": str}`` of the contract.

Then SQL-ish strings go into every path parameter and every string field of every body: no 5xx,
and the ones a request stores (a canvas name, a key note, a project name, a dashboard's
environment) come back verbatim. Throughout, the objects of another user, ``keeper``, stay as
they were: nothing the fuzzer sends reaches them.

Form bodies Tornado cannot parse (found by the fuzzer: they were answered 500) are 400.

Examples are bounded (:data:`EXAMPLES` per operation and mode), there is no deadline and no
example database; caps keep the sessions and dashboards the fuzzer may start to a few.
"""

import json
import os
import tempfile
import urllib.parse

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from livepandas_ipython.hub.apihandlers.openapi import build_document

from .support import TIMEOUT

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), f"livepandas-hypothesis-{os.getuid()}"))

EXAMPLES = 15  # per operation and generation mode: 30 cases per operation
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
SQL = ["' OR 1=1 --", "'; DROP TABLE users; --", '" OR ""="', "1; SELECT * FROM api_keys", "%' --", "\\'; --"]
METHODS = ("get", "post", "put", "patch", "delete")

CONFIG = """
c.LivePandasHub.max_sessions = 3
c.LivePandasHub.session_create_wait = 0
c.LivePandasHub.warm_pool_size = 0
c.DashboardManager.max_dashboards_per_user = 1
c.DashboardManager.max_dashboards = 2
"""

# The operations, from the document itself (built without a hub: its paths don't depend on one).
_PATHS = build_document("http://127.0.0.1/")["paths"]
OPERATIONS = [(method.upper(), path) for path, item in _PATHS.items() for method in item if method in METHODS]


def _can_be_invalid(method, path):
    """Whether an operation takes input that can be made invalid: a body, a typed or constrained
    parameter, or credentials (any string is a valid session id or key prefix)."""
    operation = _PATHS[path][method.lower()]
    parameters = operation.get("parameters", []) + _PATHS[path].get("parameters", [])
    return (
        "requestBody" in operation
        or any(p.get("schema") != {"type": "string"} for p in parameters)
        or operation.get("security") != []
    )


FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path in OPERATIONS
    for mode in ("positive", "negative")
    if mode == "positive" or _can_be_invalid(method, path)
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """``(hub, schema, keeper_state)``: a hub with users ``fuzz`` and ``keeper``, its loaded schema."""
    from hub.conftest import _close_all, _make_factory

    hubs = []
    h = _make_factory(tmp_path_factory, hubs)(users=("fuzz", "keeper"), config=CONFIG)
    try:
        h.upload("fuzz", name="fuzz's own")
        keeper = h.upload("keeper", html="<p>kept</p>", static={"k.txt": "aw=="}, name="kept")
        h.post("api/v1/keys/", user="keeper", json={"note": "kept"})
        schema = schemathesis.openapi.from_url(h.url + "api/v1/openapi.json")
        yield h, schema, keeper_state(h, keeper["id"])
    finally:
        _close_all(hubs)


def keeper_state(h, canvas_id):
    """What ``keeper`` sees of their objects (compared before and after fuzzing)."""
    canvas = h.get(f"api/v1/canvases/{canvas_id}/", user="keeper")
    keys = h.get("api/v1/keys/", user="keeper")
    assert canvas.status_code == 200 and keys.status_code == 200, (canvas.text, keys.text)
    return canvas.json(), sorted(k["prefix"] for k in keys.json()), h.get("api/v1/user/", user="keeper").json()


def assert_keeper_intact(fuzzed):
    h, _, before = fuzzed
    assert keeper_state(h, before[0]["id"]) == before


def assert_error_body(response):
    """An error answer is the contract's JSON ``{"status", "message"}``."""
    if response.status_code < 400:
        return
    ctype = response.headers.get("Content-Type") or response.headers.get("content-type") or ""
    if isinstance(ctype, list):  # schemathesis's Response: lower-case names, lists of values
        ctype = ctype[0]
    assert ctype.startswith("application/json"), response.headers
    body = json.loads(response.content)
    assert body["status"] == response.status_code, body
    assert isinstance(body["message"], str) and body["message"], body


def credentials(h):
    """The fuzz user's credentials (every authenticated endpoint takes the APIKey scheme)."""
    return {"Authorization": f"APIKey fuzz:{h.keys['fuzz']}"}


@pytest.mark.parametrize("method, path, mode", FUZZ_CASES)
def test_fuzzed_operation_answers_no_5xx_and_conforms(fuzzed, method, path, mode):
    h, schema, _ = fuzzed
    operation = schema[path][method]
    generation = schemathesis.GenerationMode.POSITIVE if mode == "positive" else schemathesis.GenerationMode.NEGATIVE
    overrides = {}
    if "{owner}" in path:
        overrides["path_parameters"] = {"owner": "fuzz"}  # else nearly every case is another user's 404
    strategies = [operation.as_strategy(generation_mode=generation)]
    if overrides:
        strategies.append(operation.as_strategy(generation_mode=generation, **overrides))
    http = requests.Session()
    seen = []

    for strategy in strategies:

        @FUZZ
        @given(case=strategy)
        def run(case):
            response = case.call(base_url=h.url.rstrip("/"), session=http, headers=credentials(h),
                                 timeout=TIMEOUT)
            seen.append(response.status_code)
            case.validate_response(response, checks=CHECKS)
            assert_error_body(response)

        run()
    http.close()
    assert seen
    assert_keeper_intact(fuzzed)


def string_fields(schema, document):
    """Names of the string properties of a JSON body schema (``$ref`` and ``anyOf`` followed)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return string_fields(document["components"]["schemas"][name], document)
    found = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += string_fields(sub, document)
    for name, prop in schema.get("properties", {}).items():
        types = prop.get("type", [])
        types = types if isinstance(types, list) else [types]
        if "string" in types or any(s.get("type") == "string" for s in prop.get("anyOf", [])):
            found.append(name)
    return sorted(set(found))


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_sql_strings_in_every_path_parameter_and_string_field(fuzzed, method, path):
    h, _, _ = fuzzed
    document = h.get("api/v1/openapi.json").json()
    operation = document["paths"][path][method.lower()]
    body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    fields = string_fields(body_schema, document) if body_schema else []
    parameters = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
    for sql in SQL:
        target = path
        for name in parameters:
            value = "fuzz" if name == "owner" and sql == SQL[0] else sql  # reach the handler once
            target = target.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        bodies = [None] if not fields else [{field: sql} for field in fields] + [{field: sql for field in fields}]
        for body in bodies:
            kwargs = {"json": body} if body is not None else {}
            r = h.request(method, target.lstrip("/"), headers=credentials(h), **kwargs)
            assert r.status_code < 500, (method, target, body, r.status_code, r.text)
            assert_error_body(r)
        query = {"status": sql, "master_id": sql} if "dashboards" in path and method == "GET" else {}
        if query:
            r = h.request(method, target.lstrip("/"), params=query, user="fuzz")
            assert r.status_code < 500, (method, target, query, r.status_code, r.text)
            assert_error_body(r)
    assert_keeper_intact(fuzzed)


def test_sql_strings_are_stored_and_returned_verbatim(fuzzed):
    h, _, _ = fuzzed
    for sql in SQL:
        canvas = h.upload("fuzz", name=sql)
        assert h.get(f"api/v1/canvases/{canvas['id']}/", user="fuzz").json()["name"] == sql
        r = h.put(f"api/v1/canvases/{canvas['id']}/", user="fuzz", json={"name": sql + "!"})
        assert r.status_code == 200 and r.json()["name"] == sql + "!", r.text
        assert h.delete(f"api/v1/canvases/{canvas['id']}/", user="fuzz").status_code == 204

        key = h.post("api/v1/keys/", user="fuzz", json={"note": sql})
        assert key.status_code == 201, key.text
        assert h.get(f"api/v1/keys/{key.json()['prefix']}/", user="fuzz").json()["note"] == sql
        assert h.delete(f"api/v1/keys/{key.json()['prefix']}/", user="fuzz").status_code == 204

        # A project name with SQL in it: either refused as a name (400) or an empty project.
        r = h.get(f"users/fuzz/projects/{urllib.parse.quote(sql, safe='')}/dashboards/", user="fuzz")
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert r.json() == []
        r = h.post("api/v1/canvas_sessions/", data={"canvas": sql})
        assert r.status_code == 400, r.text
    assert h.get("api/v1/user/", user="fuzz").json()["name"] == "fuzz"
    assert_keeper_intact(fuzzed)


MALFORMED_FORMS = {
    "control-char": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="\x12\xb9"\r\n\r\n1\r\n--b--\r\n',
    ),
    "non-utf8": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="\xff\xfe"\r\n\r\n1\r\n--b--\r\n',
    ),
    "no-boundary": ("multipart/form-data", b"--b\r\n\r\n"),
    "no-header-end": ("multipart/form-data; boundary=b", b"--b\r\nno header end"),
}


@pytest.mark.parametrize("ctype, body", MALFORMED_FORMS.values(), ids=MALFORMED_FORMS.keys())
@pytest.mark.parametrize("path", ["api/v1/keys/", "api/v1/canvas_sessions/", "users/fuzz/projects/p/dashboards/"])
def test_malformed_form_bodies_are_400(fuzzed, path, ctype, body):
    """Found by the fuzzer: a multipart body Tornado cannot parse was answered 500."""
    h, _, _ = fuzzed
    r = h.post(path, user="fuzz", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    assert_error_body(r)
    assert "malformed" in r.json()["message"]
