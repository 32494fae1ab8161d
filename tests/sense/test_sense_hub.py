"""``sense`` against a real hub: with ``SENSE_API_URL`` set, workers are the hub's dashboards.

One hub (a child process, see ``tests/hub/conftest.py``) serves the module; each test uses its own
project, so what one test launches is not among another's workers. The functions read the
environment at each call, so tests set ``SENSE_*`` with ``monkeypatch`` in this process, as a
notebook outside the hub would have them, or run code inside a dashboard, where the hub set them.
"""

import json
import os
import textwrap

import psutil
import pytest
import requests
from sense_helpers import run_code, write_framework
from test_sense_install import make_project

import sense
from sense import SIZES
from tests.hub.conftest import _close_all, _make_factory


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hubs = []
    yield _make_factory(tmp_path_factory, hubs)("--warm-pool-size", "0", users=("alice", "bob"))
    _close_all(hubs)  # fails if a dashboard outlived the hub


@pytest.fixture
def use_hub(hub, monkeypatch, request):
    """``use_hub(user="alice", project=<test name>)``: point ``sense`` at the hub as *user*."""
    used = []

    def use(user="alice", project=None, **extra):
        project = project or request.node.name.removeprefix("test_")[:60].replace("[", "-").strip("]")
        variables = {
            "SENSE_API_URL": hub.url,
            "SENSE_OWNER_ID": user,
            "SENSE_PROJECT_ID": project,
            "SENSE_API_TOKEN": hub.keys[user],
            "SENSE_PUBLIC_DNS": "127.0.0.1",
            "SENSE_PROJECT_IP": "127.0.0.1",
            **extra,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        used.append((user, project))
        return project

    yield use
    # Whatever a test left running in its projects is stopped (and the test fails).
    left = []
    for user, project in used:
        url = f"{hub.url}users/{user}/projects/{project}/dashboards/"
        for record in requests.get(url, auth=(hub.keys[user], ""), timeout=10).json():
            if record["status"] in ("starting", "running"):
                left.append(record["id"])
                requests.patch(url + str(record["id"]), auth=(hub.keys[user], ""), json={"status": "stopped"},
                               timeout=30)
    assert not left, f"dashboards left running: {left}"


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def packages_dir(hub, user, project):
    return os.path.join(hub.data_dir, "projects", user, project, "packages")


def test_the_seed_example_runs_in_a_dashboard_as_written(hub, use_hub, connected, tmp_path):
    project = use_hub()
    reports = tmp_path / "reports"
    reports.mkdir()
    # A stand-in for the seed's distributedFramework, installed in the project: every dashboard
    # of the project imports it. It records what each worker was given.
    packages = packages_dir(hub, "alice", project)
    os.makedirs(packages)
    write_framework(packages, reports)
    # The master: a dashboard launched from this process (outside the hub)...
    (master,) = sense.launch_workers(1)
    assert master["status"] == "running" and master["master_id"] is None
    kc = connected(master)
    # ...runs the seed's code, as written there, with the environment the hub gave it.
    seed = textwrap.dedent(
        '''\
        import sense
        import pickle
        info = pickle.dumps(sense.networkInfo())
        code = """
        import distributedFramework
        distributedFramework.contactMaster(%s)
        """%info
        workers = sense.launchWorkers(2, "medium", startupCode=code)
        '''
    )
    run_code(kc, seed, timeout=120)
    workers = json.loads(run_code(kc, "import json; print(json.dumps(workers))"))
    assert [w["status"] for w in workers] == ["running", "running"], workers
    for worker in workers:
        assert (worker["engine"], worker["size"], worker["master_id"]) == ("sense-ipython-engine", "medium", master["id"])
        with open(reports / f"{worker['id']}.json") as f:
            report = json.load(f)
        assert report["master"] == str(master["id"])
        assert report["info"]["project_ip"] == "127.0.0.1" and report["info"]["public_dns"] == "127.0.0.1"
        assert report["mem_limit"] == SIZES["medium"]["mem_limit"]

    # In the master: its workers, itself, and stopping them all.
    listed = json.loads(run_code(kc, "print(json.dumps([w['id'] for w in sense.getWorkers()]))"))
    assert sorted(listed) == sorted(w["id"] for w in workers)  # launched concurrently: any order
    me = json.loads(run_code(kc, "print(json.dumps(sense.getMaster()))"))
    assert (me["id"], me["status"]) == (master["id"], "running")
    # In a worker, the master is the same dashboard and the siblings are the workers.
    kw = connected(workers[0])
    assert json.loads(run_code(kw, "import sense, json; print(json.dumps(sense.get_master()['id']))")) == master["id"]
    assert sorted(json.loads(run_code(kw, "print(json.dumps([w['id'] for w in sense.get_workers()]))"))) == sorted(listed)
    stopped = json.loads(run_code(kc, "print(json.dumps([w['status'] for w in sense.stopWorkers()]))"))
    assert stopped == ["stopped", "stopped"]
    assert all(gone(w["pid"]) for w in workers)
    assert json.loads(run_code(kc, "print(json.dumps(sense.get_workers()))")) == []
    sense.stop_workers(master)
    assert gone(master["pid"])


def test_launch_list_reach_and_stop_workers(use_hub, connected, tmp_path):
    use_hub()
    out = tmp_path / "ran"
    out.mkdir()
    code = f"import os\nopen(os.path.join({str(out)!r}, os.environ['SENSE_DASHBOARD_ID']), 'w').write(os.environ['COLOR'])"
    workers = sense.launch_workers(2, startup_code=code, env={"COLOR": "teal"})
    assert [w["status"] for w in workers] == ["running", "running"], workers
    ids = [w["id"] for w in workers]
    assert sorted(os.listdir(out)) == sorted(map(str, ids))  # the startup code ran in each
    assert all((out / str(i)).read_text() == "teal" for i in ids)
    assert all(w["master_id"] is None and w["size"] == "small" for w in workers)
    assert sorted(w["id"] for w in sense.get_workers()) == sorted(ids)
    assert run_code(connected(workers[1]), "print(os.environ['SENSE_DASHBOARD_ID'])").strip() == str(ids[1])

    (first,) = sense.stop_workers(ids[0])
    assert (first["id"], first["status"]) == (ids[0], "stopped") and first["stopped_at"]
    assert gone(workers[0]["pid"]) and not gone(workers[1]["pid"])
    assert [w["id"] for w in sense.getWorkers()] == ids[1:]
    # Stopping a stopped one again just reports it; records and lists work as ids.
    assert [w["id"] for w in sense.stop_workers(first, [workers[0]])] == [ids[0]]
    with pytest.raises(sense.WorkerError, match=r"is not running \(status: stopped\)"):
        sense.connect(workers[0])

    rest = sense.stopWorkers()
    assert [(w["id"], w["status"]) for w in rest] == [(ids[1], "stopped")]
    assert sense.get_workers() == [] and sense.stop_workers() == []
    assert all(gone(w["pid"]) for w in workers)


def test_a_startup_script_from_this_machine(use_hub, tmp_path):
    use_hub()
    out = tmp_path / "out.txt"
    script = tmp_path / "boot.py"
    script.write_text(f"import os\nopen({str(out)!r}, 'w').write(os.environ['GREETING'] + ' ' + __file__)\n")
    (worker,) = sense.launchWorkers(1, startupScript=str(script), env={"GREETING": "hello"})
    assert worker["status"] == "running", worker
    assert out.read_text() == f"hello {script}"
    sense.stopWorkers(worker["id"])


def test_a_failing_startup_is_a_failed_record(use_hub):
    use_hub()
    (worker,) = sense.launch_workers(1, startup_code="raise RuntimeError('no data <here>')")
    assert worker["status"] == "failed"
    assert worker["error"] == "startup failed: RuntimeError: no data <here>"
    assert "RuntimeError: no data <here>" in worker["traceback"]
    assert sense.get_workers() == []


def test_install_on_one_dashboard_is_importable_on_the_next(hub, use_hub, connected, tmp_path):
    project = use_hub()
    source = make_project(tmp_path / "src", "sense_tiny_hub")
    pip_env = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    (first,) = sense.launch_workers(1, env=pip_env)
    output = run_code(
        connected(first),
        f"import sense\nsense.install({str(source)!r}, flags=['no-index', 'no-build-isolation'])\n"
        "import sense_tiny_hub\nprint('value', sense_tiny_hub.VALUE)",
        timeout=120,
    )
    assert "Successfully installed sense_tiny_hub-1.0" in output and "value 42" in output
    packages = packages_dir(hub, "alice", project)
    assert os.path.isfile(os.path.join(packages, "sense_tiny_hub", "__init__.py"))

    # A dashboard started afterwards imports it in its startup code, and a subprocess of it too.
    (second,) = sense.launch_workers(1, startup_code="import sense_tiny_hub")
    assert second["status"] == "running", second
    kc = connected(second)
    assert run_code(kc, "print(sense_tiny_hub.VALUE, sense_tiny_hub.__file__)").split() == [
        "42", os.path.join(packages, "sense_tiny_hub", "__init__.py")
    ]
    script = "import subprocess, sys; print(subprocess.run([sys.executable, '-c', 'import sense_tiny_hub']).returncode)"
    assert run_code(kc, script).strip() == "0"
    sense.stop_workers()


def test_unknown_ids_and_another_users_dashboards_are_unknown_workers(hub, use_hub):
    use_hub("bob", project="shared-name")
    (theirs,) = sense.launch_workers(1)
    use_hub("alice", project="shared-name")
    for worker_id in (theirs["id"], 999999, "abc"):
        with pytest.raises(sense.UnknownWorkerError) as info:
            sense.stop_workers(worker_id)
        assert info.value.ids == [worker_id] and repr(worker_id) in str(info.value)
        assert isinstance(info.value, LookupError)
        with pytest.raises(sense.UnknownWorkerError):
            sense.connect(worker_id)
    assert sense.get_workers() == []
    # Alice naming bob as the owner: the hub answers 404, as if bob had no such project.
    use_hub("alice", project="shared-name", SENSE_OWNER_ID="bob")
    with pytest.raises(sense.HubError) as info:
        sense.get_workers()
    assert info.value.status == 404 and "404 Client Error" in str(info.value)
    assert "user 'bob' has no project 'shared-name' that you can see" in str(info.value)
    with pytest.raises(sense.HubError):
        sense.launch_workers(1)
    # Bob's dashboard was untouched by all this.
    use_hub("bob", project="shared-name")
    assert [w["id"] for w in sense.get_workers()] == [theirs["id"]]
    sense.stop_workers()


def test_the_hub_refuses_bad_launches_with_its_message(use_hub):
    use_hub()
    with pytest.raises(sense.HubError, match="unknown worker size 'huge'; the sizes are: small, medium, large") as info:
        sense.launch_workers(1, "huge")
    assert info.value.status == 400
    with pytest.raises(sense.HubError, match="unknown engine 'bash'"):
        sense.launch_workers(2, engine="bash")
    with pytest.raises(sense.HubError, match="does not exist"):
        sense.launch_workers(1, startup_script="no-such-script.py")
    assert sense.get_workers() == []


def test_missing_or_wrong_configuration_is_named(hub, monkeypatch):
    monkeypatch.setenv("SENSE_API_URL", hub.url)
    with pytest.raises(sense.ConfigurationError) as info:
        sense.get_workers()
    assert info.value.variables == ["SENSE_OWNER_ID", "SENSE_PROJECT_ID"]
    assert "SENSE_OWNER_ID and SENSE_PROJECT_ID are not" in str(info.value)
    monkeypatch.setenv("SENSE_OWNER_ID", "alice")
    monkeypatch.setenv("SENSE_PROJECT_ID", "p")
    with pytest.raises(sense.ConfigurationError) as info:
        sense.launch_workers(1)
    assert "SENSE_API_TOKEN" in info.value.variables and "SENSE_API_TOKEN" in str(info.value)
    monkeypatch.setenv("SENSE_API_TOKEN", "not-a-key-of-anyone")
    with pytest.raises(sense.HubError) as info:
        sense.get_workers()
    assert info.value.status == 401
    monkeypatch.setenv("SENSE_API_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(sense.HubError, match="cannot reach the hub at http://127.0.0.1:9"):
        sense.get_workers()


def test_a_hub_dashboard_sees_the_hub_by_default(hub, use_hub, connected):
    """Inside a dashboard nothing needs configuring: the hub's environment is enough for sense."""
    project = use_hub()
    (worker,) = sense.launch_workers(1)
    kc = connected(worker)
    got = json.loads(run_code(kc, "import json, sense; print(json.dumps([sense.get_auth()['pass'], sense.network_info()]))"))
    assert got == ["", {"public_dns": "127.0.0.1", "public_port_mapping": {}, "ssh_password": None,
                        "project_ip": "127.0.0.1"}]
    listed = json.loads(run_code(kc, "print(json.dumps([w['id'] for w in sense.get_workers()]))"))
    assert listed == []  # a top-level dashboard has no workers yet
    assert run_code(kc, "import os; print(os.environ['SENSE_PROJECT_ID'])").strip() == project
    sense.stop_workers()
