"""The Sense dashboards API of a real hub: real dashboards (IPython kernels), real credentials."""

import json
import os
import signal
import sqlite3
import textwrap
import time

import psutil
import pytest
import requests

from livepandas_ipython.hub.auth import hash_key, key_prefix, new_key
from livepandas_ipython.hub.db import MIGRATIONS, SCHEMA_VERSION, Database
from sense import SIZES

from .conftest import ADD, alive, wait_until

START_TIMEOUT = 60  # a deadline for a kernel to start on a loaded machine, not a speed assertion

# Startup code that reports what a dashboard sees to the file named by its REPORT variable.
REPORT = textwrap.dedent(
    """\
    import json, os, resource, sys
    with open(os.environ["REPORT"], "w") as f:
        json.dump({
            "env": {k: v for k, v in os.environ.items() if k.startswith("SENSE_") or k in ("COLOR", "PYTHONPATH")},
            "sys_path": sys.path,
            "cwd": os.getcwd(),
            "mem_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
            "cpu_limit": resource.getrlimit(resource.RLIMIT_CPU)[0],
        }, f)
    """
)


def path(owner, project="p", dashboard_id=None):
    base = f"users/{owner}/projects/{project}/dashboards/"
    return base if dashboard_id is None else f"{base}{dashboard_id}"


def basic(h, user):
    """Basic credentials of *user*: their API key as the user name, empty password."""
    return (h.keys[user], "")


def create(h, user, project="p", expect=201, **body):
    r = h.post(path(user, project), auth=basic(h, user), json=body)
    assert r.status_code == expect, r.text
    return r.json()


def wait_started(h, user, record, project="p"):
    """Poll a dashboard until it is no longer starting; returns its record."""

    def started():
        got = h.get(path(user, project, record["id"]), auth=basic(h, user)).json()
        return got if got["status"] != "starting" else None

    return wait_until(started, START_TIMEOUT, 0.1, message=f"dashboard {record['id']} to start")


def stop(h, user, record, project="p"):
    r = h.request("PATCH", path(user, project, record["id"]), auth=basic(h, user), json={"status": "stopped"})
    assert r.status_code == 200, r.text
    return r.json()


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def key_works(h, key):
    return h.get(path("alice"), auth=(key, "")).status_code == 200


@pytest.fixture(scope="module")
def h(shared_hub):
    shared_hub.create_user("carol", password="correct horse")
    return shared_hub


@pytest.fixture(autouse=True)
def stop_everything(request):
    """Stop every dashboard a test of the shared hub left running."""
    yield
    if "h" not in request.fixturenames:
        return
    hub = request.getfixturevalue("h")
    for user in ("alice", "bob", "carol"):
        for project in ("p", "q"):
            for record in hub.get(path(user, project), auth=basic(hub, user)).json():
                if record["status"] in ("starting", "running"):
                    stop(hub, user, record, project)


# -- create, environment, stop --------------------------------------------------------------------


def test_a_dashboard_runs_its_startup_code_with_the_sense_environment(h, tmp_path):
    report = tmp_path / "report.json"
    r = h.post(
        path("alice"),
        auth=basic(h, "alice"),
        json={"size": "medium", "startup_code": REPORT, "env": {"REPORT": str(report), "COLOR": "teal",
                                                                "SENSE_DASHBOARD_ID": "spoofed"}},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["Location"] == created["self"] == h.url + path("alice", "p", created["id"])
    assert (created["owner"], created["project"], created["engine"], created["size"]) == (
        "alice", "p", "sense-ipython-engine", "medium"
    )
    assert created["status"] in ("starting", "running") and created["master_id"] is None

    record = wait_started(h, "alice", created)
    assert record["status"] == "running", record
    assert record["error"] is None and record["stopped_at"] is None
    assert record["connection"]["key"] and record["connection"]["shell_port"] == record["port"]
    assert (record["mem_limit"], record["cpu_limit"]) == (SIZES["medium"]["mem_limit"], SIZES["medium"]["cpu_limit"])

    seen = json.loads(report.read_text())
    env = seen["env"]
    packages = os.path.join(h.data_dir, "projects", "alice", "p", "packages")
    assert env["SENSE_API_URL"] == h.url.rstrip("/")
    assert (env["SENSE_OWNER_ID"], env["SENSE_PROJECT_ID"]) == ("alice", "p")
    assert env["SENSE_DASHBOARD_ID"] == str(record["id"])
    assert env["SENSE_MASTER_ID"] == ""
    assert (env["SENSE_PUBLIC_DNS"], env["SENSE_PROJECT_IP"]) == ("127.0.0.1", "127.0.0.1")
    assert env["COLOR"] == "teal"
    assert env["SENSE_PROJECT_PACKAGES"] == packages and os.path.isdir(packages)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == packages
    # After the working directory (the project's folder), before anything installed.
    assert seen["sys_path"][:2] == [os.path.dirname(packages), packages]
    assert seen["cwd"] == os.path.dirname(packages)
    assert (seen["mem_limit"], seen["cpu_limit"]) == (SIZES["medium"]["mem_limit"], SIZES["medium"]["cpu_limit"])
    # The dashboard's token is a key of its owner, listed while it runs...
    token = env["SENSE_API_TOKEN"]
    assert key_works(h, token)
    notes = [k["note"] for k in h.get("api/v1/keys/", user="alice").json()]
    assert f"sense dashboard {record['id']} of project p" in notes

    stopped = stop(h, "alice", record)
    assert stopped["status"] == "stopped" and stopped["stopped_at"] and stopped["error"] is None
    assert gone(record["pid"])
    # ...and revoked once it stops.
    assert not key_works(h, token)
    assert h.get(path("alice", "p", record["id"]), auth=basic(h, "alice")).json()["status"] == "stopped"
    # Stopping again just reports it.
    assert stop(h, "alice", record)["status"] == "stopped"


def test_list_get_filters_and_a_master_taking_its_workers_along(h):
    first = wait_started(h, "alice", create(h, "alice", "q"), "q")
    second = create(h, "alice", "q", startup_code="x = 1")
    worker = create(h, "alice", "q", master_id=first["id"])
    assert worker["master_id"] == first["id"]
    second, worker = wait_started(h, "alice", second, "q"), wait_started(h, "alice", worker, "q")

    def ids(query=""):
        r = h.get(path("alice", "q") + query, auth=basic(h, "alice"))
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()]

    assert ids() == [first["id"], second["id"], worker["id"]]
    assert ids(f"?master_id={first['id']}") == [worker["id"]]
    assert ids("?master_id=") == [first["id"], second["id"]]
    assert ids("?status=running") == [first["id"], second["id"], worker["id"]]
    assert ids("?status=stopped,failed") == []
    assert ids().count(worker["id"]) == 1
    # Without the trailing slash too; another project of the same owner, or an unknown one: empty.
    assert h.get(path("alice", "q").rstrip("/"), auth=basic(h, "alice")).json()[0]["id"] == first["id"]
    assert h.get(path("alice", "never-used"), auth=basic(h, "alice")).json() == []
    got = h.get(path("alice", "q", second["id"]) + "/", auth=basic(h, "alice")).json()
    assert got == second

    # A dashboard's id under another project, an unknown id and a malformed one: 404.
    for project, dashboard_id in (("p", second["id"]), ("q", 999999), ("q", "abc")):
        r = h.get(path("alice", project, dashboard_id), auth=basic(h, "alice"))
        assert (r.status_code, r.json()["status"]) == (404, 404)
        r = h.request("PATCH", path("alice", project, dashboard_id), auth=basic(h, "alice"), json={"status": "stopped"})
        assert r.status_code == 404

    # Stopping the master stops its worker; the sibling keeps running.
    stop(h, "alice", first, "q")
    got = h.get(path("alice", "q", worker["id"]), auth=basic(h, "alice")).json()
    assert (got["status"], got["error"]) == ("stopped", f"its master {first['id']} stopped")
    assert gone(first["pid"]) and gone(worker["pid"]) and not gone(second["pid"])
    assert ids("?status=running") == [second["id"]]
    stop(h, "alice", second, "q")
    assert gone(second["pid"])
    assert ids("?status=running") == []


def test_form_bodies_and_every_kind_of_credentials(h, tmp_path):
    report = tmp_path / "form.json"
    # Basic with a password, a form body (env as JSON text), the Sense spelling of the field.
    r = h.post(
        path("carol"),
        auth=("carol", "correct horse"),
        data={"startupCode": REPORT, "size": "small", "env": json.dumps({"REPORT": str(report), "COLOR": 7})},
    )
    assert r.status_code == 201, r.text
    record = r.json()
    wait_until(report.exists, START_TIMEOUT, message="the form-created dashboard's report")
    assert json.loads(report.read_text())["env"]["COLOR"] == "7"
    # The key as the user name, the key as the password, and the APIKey header all work.
    for kwargs in (
        {"auth": (h.keys["carol"], "")},
        {"auth": ("carol", h.keys["carol"])},
        {"headers": {"Authorization": f"APIKey carol:{h.keys['carol']}"}},
    ):
        r = h.get(path("carol", "p", record["id"]), **kwargs)
        assert r.status_code == 200 and r.json()["id"] == record["id"]
    # A form PATCH stops it.
    r = h.request("PATCH", path("carol", "p", record["id"]), auth=("carol", "correct horse"), data={"status": "stopped"})
    assert (r.status_code, r.json()["status"]) == (200, "stopped")

    for kwargs in (
        {"auth": ("carol", "wrong")},
        {"auth": ("nobody", "correct horse")},
        {"auth": ("x" * 43, "")},
        {"headers": {"Authorization": "Basic !!!"}},
        {},
    ):
        for method in ("GET", "POST"):
            r = h.request(method, path("carol"), json={}, **kwargs)
            assert r.status_code == 401, (kwargs, r.text)
            assert r.json()["status"] == 401 and r.json()["message"]
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert [d["status"] for d in h.get(path("carol"), auth=basic(h, "carol")).json()] == ["stopped"]


def test_another_users_dashboards_are_404_on_every_endpoint(h):
    theirs = wait_started(h, "bob", create(h, "bob", startup_code="x = 1"))
    as_alice = {"auth": basic(h, "alice")}
    answers = [
        h.get(path("bob"), **as_alice),
        h.post(path("bob"), json={}, **as_alice),
        h.post(path("bob", "brand-new"), json={}, **as_alice),
        h.get(path("bob", "p", theirs["id"]), **as_alice),
        h.request("PATCH", path("bob", "p", theirs["id"]), json={"status": "stopped"}, **as_alice),
        # Under one's own path, someone else's id is just unknown.
        h.get(path("alice", "p", theirs["id"]), **as_alice),
        h.request("PATCH", path("alice", "p", theirs["id"]), json={"status": "stopped"}, **as_alice),
    ]
    for r in answers:
        assert (r.status_code, r.json()["status"]) == (404, 404), r.request.method + " " + r.url
    # The same answer for a user that does not exist: nothing about other accounts leaks.
    unknown = h.get(path("nobody"), **as_alice)
    assert unknown.status_code == 404
    assert unknown.json()["message"] == answers[0].json()["message"].replace("'bob'", "'nobody'")
    # Nothing changed for bob.
    listed = h.get(path("bob"), auth=basic(h, "bob")).json()
    assert [(d["id"], d["status"]) for d in listed] == [(theirs["id"], "running")]
    assert h.get(path("bob", "brand-new"), auth=basic(h, "bob")).json() == []
    stop(h, "bob", theirs)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"size": 3}, "'size' must be a string"),
        ({"size": "huge"}, "unknown worker size 'huge'; the sizes are: small, medium, large"),
        ({"engine": ["x"]}, "'engine' must be a string"),
        ({"engine": "bash"}, "unknown engine 'bash'"),
        ({"env": [1]}, "'env' must be an object"),
        ({"env": "not json"}, "'env' must be an object"),
        ({"env": {"A": [1]}}, "env['A'] must be a string"),
        ({"env": {"A": True}}, "env['A'] must be a string"),
        ({"env": {"A=B": "1"}}, "is not an environment variable name"),
        ({"startup_code": 5}, "'startup_code' must be a string"),
        ({"startup_code": "x = 1", "startupScript": "boot.py"}, "mutually exclusive"),
        ({"startup_code": "x = 1", "startupCode": "x = 2"}, "give startup_code or startupCode, not both"),
        ({"startup_script": "no-such-script.py"}, "does not exist"),
        ({"master_id": "x"}, "'master_id' must be a dashboard id"),
        ({"master_id": 999999}, "master_id 999999 is not a dashboard of your project 'p'"),
        ({"master_id": {"id": 1}}, "'master_id' must be a dashboard id"),
        ({"name": "x"}, "unknown field(s) 'name'"),
        ([1], "the body must be a JSON object"),
        ("{not json", "the body is not valid JSON"),
    ],
)
def test_malformed_creations_are_400_and_start_nothing(h, body, message):
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else {"json": body}
    r = h.post(path("alice"), auth=basic(h, "alice"), **kwargs)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and message in r.json()["message"]
    assert [d for d in h.get(path("alice"), auth=basic(h, "alice")).json() if d["status"] != "stopped"] == []


def test_malformed_patches_queries_and_names_are_400(h):
    record = create(h, "alice")
    url = path("alice", "p", record["id"])
    for kwargs in (
        {"json": {"status": "running"}},
        {"json": {}},
        {"json": {"status": "stopped", "size": "large"}},
        {"data": {"status": "paused"}},
    ):
        r = h.request("PATCH", url, auth=basic(h, "alice"), **kwargs)
        assert r.status_code == 400, (kwargs, r.text)
        assert r.json()["message"] == 'the only change a dashboard takes is {"status": "stopped"}'
    for kwargs in ({"json": ["stopped"]}, {"data": "{", "headers": {"Content-Type": "application/json"}}):
        r = h.request("PATCH", url, auth=basic(h, "alice"), **kwargs)
        assert (r.status_code, r.json()["status"]) == (400, 400), (kwargs, r.text)
    for query in ("?status=sleeping", "?master_id=abc", "?status="):
        r = h.get(path("alice") + query, auth=basic(h, "alice"))
        assert r.status_code == 400 and r.json()["status"] == 400, query
    r = h.post(path("alice", "-bad"), auth=basic(h, "alice"), json={})
    assert r.status_code == 400 and "not a project name" in r.json()["message"]
    assert wait_started(h, "alice", record)["status"] == "running"
    stop(h, "alice", record)


def test_a_failing_startup_is_a_failed_dashboard_without_a_process(h):
    record = wait_started(h, "alice", create(h, "alice", startup_code="raise RuntimeError('no data <here>')"))
    assert record["status"] == "failed"
    assert record["error"] == "startup failed: RuntimeError: no data <here>"
    assert "RuntimeError: no data <here>" in record["traceback"]
    assert record["stopped_at"]
    wait_until(lambda: gone(record["pid"]), 10, message="the failed dashboard's process to end")
    notes = [k["note"] for k in h.get("api/v1/keys/", user="alice").json()]
    assert f"sense dashboard {record['id']} of project p" not in notes  # its key is revoked


def test_startup_scripts_by_absolute_path_and_in_the_project_folder(h, tmp_path):
    out = tmp_path / "out.txt"
    script = tmp_path / "boot.py"
    script.write_text(f"import os\nopen({str(out)!r}, 'a').write(os.path.basename(__file__) + ';')\n")
    first = wait_started(h, "alice", create(h, "alice", startup_script=str(script)))
    assert first["status"] == "running", first
    project_dir = os.path.join(h.data_dir, "projects", "alice", "p")
    with open(os.path.join(project_dir, "local.py"), "w") as f:
        f.write(script.read_text())
    second = wait_started(h, "alice", create(h, "alice", startupScript="local.py"))
    assert second["status"] == "running", second
    assert out.read_text() == "boot.py;local.py;"
    stop(h, "alice", first)
    stop(h, "alice", second)


def test_a_dashboard_that_exits_by_itself_is_reported_stopped(h):
    record = wait_started(h, "alice", create(h, "alice"))
    os.kill(record["pid"], signal.SIGKILL)

    def ended():
        got = h.get(path("alice", "p", record["id"]), auth=basic(h, "alice")).json()
        return got if got["status"] != "running" else None

    got = wait_until(ended, 10, message="the killed dashboard to be reported")
    assert (got["status"], got["error"]) == ("stopped", f"exited on its own with status {-signal.SIGKILL}")


# -- caps, hub stop and restart, migration ----------------------------------------------------------


def test_the_per_user_cap_answers_429_with_retry_after(hub):
    h = hub("--warm-pool-size", "0", "--DashboardManager.max_dashboards_per_user=1", users=["alice", "bob"])
    first = create(h, "alice")
    r = h.post(path("alice"), auth=basic(h, "alice"), json={})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json() == {"status": 429, "message": "you have the maximum of 1 dashboards running; stop one first"}
    other = create(h, "bob")  # a cap per user
    stop(h, "alice", first)
    second = create(h, "alice")
    for user, record in (("alice", second), ("bob", other)):
        stop(h, user, record)


def running_dashboards(h, user, count):
    records = [create(h, user, startup_code="x = 1") for _ in range(count)]
    records = [wait_started(h, user, r) for r in records]
    assert all(r["status"] == "running" for r in records), records
    return records


def test_hub_sigterm_stops_every_dashboard(hub):
    h = hub("--warm-pool-size", "0", users=["alice"])
    records = running_dashboards(h, "alice", 2)
    tokens = [k["prefix"] for k in h.get("api/v1/keys/", user="alice").json()]
    assert len(tokens) == 3
    assert h.stop() == 0
    assert all(gone(r["pid"]) for r in records)
    h.restart()
    listed = h.get(path("alice"), auth=basic(h, "alice")).json()
    assert [(d["status"], d["error"]) for d in listed] == [("stopped", "the hub stopped")] * 2
    assert len(h.get("api/v1/keys/", user="alice").json()) == 1  # the dashboards' keys are revoked


def test_hub_sigkill_then_restart_leaves_no_dashboard(hub):
    h = hub("--warm-pool-size", "0", users=["alice"])
    records = running_dashboards(h, "alice", 2)
    h.kill()
    # The engines see their stdin close and exit by themselves.
    wait_until(lambda: all(gone(r["pid"]) for r in records), 15, message="orphaned dashboards to exit")
    h.restart()
    listed = h.get(path("alice"), auth=basic(h, "alice")).json()
    assert [(d["status"], d["error"]) for d in listed] == [("stopped", "the hub restarted")] * 2
    assert len(h.get("api/v1/keys/", user="alice").json()) == 1
    assert wait_started(h, "alice", create(h, "alice"))["status"] == "running"


# Startup code that keeps the engine alive when its stdin closes and its parent is gone (both end
# it with os._exit): only a restarted hub can stop it.
IMMORTAL = """
import os
os._exit = lambda *args: None
"""


def test_a_restarted_hub_reaps_a_dashboard_the_killed_hub_left(hub):
    h = hub("--warm-pool-size", "0", users=["alice"])
    record = wait_started(h, "alice", create(h, "alice", startup_code=IMMORTAL))
    assert record["status"] == "running", record
    pid = record["pid"]
    try:
        h.kill()
        time.sleep(0.5)  # were it not immortal, it would be exiting now
        assert alive(pid)
        h.restart()  # the new hub finds it in the database before serving
        assert not alive(pid)
        assert "killed 1 worker(s) left running by the previous hub" in h.log
        got = h.get(path("alice", "p", record["id"]), auth=basic(h, "alice")).json()
        assert (got["status"], got["error"]) == ("stopped", "the hub restarted")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def make_v1_database(data_dir):
    """A data directory as the first release wrote it: schema 1, one user with a key, one canvas."""
    os.makedirs(os.path.join(data_dir, "canvases", "1"), mode=0o700)
    with open(os.path.join(data_dir, "canvases", "1", "code.py"), "w") as f:
        f.write(ADD)
    key = new_key()
    conn = sqlite3.connect(os.path.join(data_dir, "hub.sqlite"))
    conn.executescript(MIGRATIONS[0])
    now = time.time()
    conn.execute("INSERT INTO users (id, name, password, created) VALUES (1, 'olduser', NULL, ?)", (now,))
    conn.execute(
        "INSERT INTO api_keys (user_id, prefix, hash, note, created) VALUES (1, ?, ?, 'old', ?)",
        (key_prefix(key), hash_key(key), now),
    )
    functions = [{"name": "add", "signature": "add(x, y)", "doc": "Add two numbers."}]
    conn.execute(
        "INSERT INTO canvases (id, owner_id, name, functions, created, updated) VALUES (1, 1, 'old', ?, ?, ?)",
        (json.dumps(functions), now, now),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    return key


def test_a_version_1_database_migrates_and_keeps_users_and_canvases(hub, tmp_path):
    data_dir = str(tmp_path / "v1")
    os.makedirs(data_dir, mode=0o700)
    key = make_v1_database(data_dir)
    copy = str(tmp_path / "copy.sqlite")
    with open(os.path.join(data_dir, "hub.sqlite"), "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    db = Database(copy)
    try:
        assert db.version == SCHEMA_VERSION >= 2
        assert db.user_by_name("olduser")["id"] == 1 and db.canvas(1)["name"] == "old"
        assert db.dashboards() == [] and db.project(1, "p") is None
    finally:
        db.close()

    h = hub("--warm-pool-size", "0", data_dir=data_dir)
    h.keys["olduser"] = key
    assert h.get("api/v1/user/", user="olduser").json()["name"] == "olduser"
    assert h.get("api/v1/canvases/1/", user="olduser").json()["python"] == ADD
    session = h.wait_running(h.new_session(1))
    r = requests.get(f"http://{session['socket']}/add", params={"kwargs": '{"x": 2, "y": 3}'}, timeout=5)
    assert r.json() == {"result": 5}
    record = wait_started(h, "olduser", create(h, "olduser"))
    assert (record["status"], record["id"]) == ("running", 1)
    stop(h, "olduser", record)
