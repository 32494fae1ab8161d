"""Workers on the embedded backend: real engine processes launched, listed, reached and stopped."""

import json
import os
import resource
import subprocess
import sys
import textwrap
import time

import pytest
from sense_helpers import process_alive, run_code, write_framework

import sense
from sense._backend import SIZES


def wait_gone(pids, timeout=5):
    deadline = time.monotonic() + timeout
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [p for p in pids if process_alive(p)]


def test_the_seed_example_runs_as_written(tmp_path, monkeypatch):
    # A stand-in for the seed's distributedFramework: it records what each worker was given.
    framework = tmp_path / "framework"
    framework.mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    write_framework(framework, reports)
    monkeypatch.setenv("PYTHONPATH", str(framework))

    # The seed's code, as written there.
    import pickle

    import sense

    info = pickle.dumps(sense.networkInfo())
    code = """
import distributedFramework
distributedFramework.contactMaster(%s)
""" % info
    workers = sense.launchWorkers(2, "medium", startupCode=code)

    assert [w["status"] for w in workers] == ["running", "running"]
    master = sense.get_master()
    assert master["id"] == os.getpid() and master["master_id"] is None
    for worker in workers:
        assert worker["engine"] == "sense-ipython-engine"
        assert worker["size"] == "medium"
        assert worker["master_id"] == master["id"]
        assert worker["error"] is None
        with open(reports / f"{worker['id']}.json") as f:
            report = json.load(f)
        assert report["info"] == json.loads(json.dumps(sense.networkInfo()))
        assert report["master"] == str(master["id"])
        assert report["mem_limit"] == SIZES["medium"]["mem_limit"]
        assert report["cpu_limit"] == SIZES["medium"]["cpu_limit"]
    stopped = sense.stopWorkers()
    assert sorted(w["id"] for w in stopped) == sorted(w["id"] for w in workers)
    assert wait_gone([w["pid"] for w in workers]) == []


def test_startup_code_runs_with_the_dashboard_environment(connected, tmp_path, monkeypatch):
    packages = tmp_path / "project-packages"
    monkeypatch.setenv("SENSE_PROJECT_PACKAGES", str(packages))
    (worker,) = sense.launch_workers(
        1,
        startup_code="import os, sys\nseen = {k: v for k, v in os.environ.items() if k.startswith(('SENSE', 'COLOR'))}",
        env={"COLOR": "teal", "SENSE_MASTER_ID": "ignored: a worker's master is its launcher"},
    )
    assert worker["status"] == "running"
    kc = connected(worker)
    seen = json.loads(run_code(kc, "import json; print(json.dumps(seen))"))
    assert seen["COLOR"] == "teal"
    assert seen["SENSE_DASHBOARD_ID"] == str(worker["id"]) == str(worker["pid"])
    assert seen["SENSE_MASTER_ID"] == str(os.getpid())
    assert seen["SENSE_PROJECT_IP"] == "127.0.0.1" and seen["SENSE_PUBLIC_DNS"] == "localhost"
    assert seen["SENSE_OWNER_ID"] and seen["SENSE_PROJECT_ID"] == "local"
    assert seen["SENSE_PROJECT_PACKAGES"] == str(packages)
    assert "SENSE_API_URL" not in seen
    assert run_code(kc, "print(sys.path[0])").strip() == str(packages)
    # Inside the worker, sense sees the same network and its launcher as its master.
    assert json.loads(run_code(kc, "import sense, json; print(json.dumps(sense.get_master()))"))["id"] == os.getpid()
    sense.stop_workers(worker["id"])


def test_startup_script_in_the_sense_spelling(tmp_path):
    out = tmp_path / "out.txt"
    script = tmp_path / "boot.py"
    script.write_text(f"import os\nopen({str(out)!r}, 'w').write(os.environ['GREETING'] + ' ' + __file__)\n")
    (worker,) = sense.launchWorkers(1, startupScript=str(script), env={"GREETING": "hello"})
    assert worker["status"] == "running"
    assert out.read_text() == f"hello {script}"
    sense.stopWorkers(worker["id"])


def test_list_stop_one_then_all(connected):
    workers = sense.launch_workers(3, startup_code="ready = True")
    ids = [w["id"] for w in workers]
    assert [w["id"] for w in sense.get_workers()] == ids  # launch order
    assert all(process_alive(w["pid"]) for w in workers)

    (first,) = sense.stop_workers(ids[0])
    assert first["id"] == ids[0] and first["status"] == "stopped" and first["stopped_at"]
    assert not process_alive(workers[0]["pid"])
    assert [w["id"] for w in sense.getWorkers()] == ids[1:]
    # Stopping a stopped worker again just reports it; ids may be strings or records.
    assert sense.stop_workers(str(ids[0]))[0]["status"] == "stopped"
    assert [w["id"] for w in sense.stop_workers(first, [workers[0]])] == [ids[0]]
    # The others are untouched and still answer.
    assert run_code(connected(workers[1]), "print(ready)") == "True\n"

    rest = sense.stop_workers()
    assert [w["id"] for w in rest] == ids[1:]
    assert all(w["status"] == "stopped" for w in rest)
    assert sense.get_workers() == []
    assert wait_gone([w["pid"] for w in workers]) == []
    assert sense.stop_workers() == []
    with pytest.raises(sense.WorkerError, match=r"is not running \(status: stopped\)"):
        sense.connect(workers[1])


def test_a_failing_startup_is_a_failed_record_and_no_process(tmp_path):
    workers = sense.launch_workers(2, startup_code="raise RuntimeError('no data <here>')")
    for worker in workers:
        assert worker["status"] == "failed"
        assert worker["error"] == "startup failed: RuntimeError: no data <here>"
        assert "RuntimeError: no data <here>" in worker["traceback"]
    assert wait_gone([w["pid"] for w in workers]) == []
    assert sense.get_workers() == []
    html = workers._repr_html_()
    assert "no data &lt;here&gt;" in html and "<here>" not in html


def test_unknown_worker_ids_stop_nothing():
    (worker,) = sense.launch_workers(1)
    with pytest.raises(sense.UnknownWorkerError) as info:
        sense.stop_workers(worker["id"], 999999999)
    assert "999999999" in str(info.value) and str(worker["id"]) in str(info.value)
    assert info.value.ids == [999999999]
    assert isinstance(info.value, LookupError)
    assert [w["id"] for w in sense.get_workers()] == [worker["id"]]
    with pytest.raises(sense.UnknownWorkerError):
        sense.connect(123456789)
    sense.stop_workers()


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="mutually exclusive"):
        sense.launch_workers(1, startup_code="x = 1", startup_script="boot.py")
    with pytest.raises(ValueError, match="mutually exclusive"):
        sense.launchWorkers(1, startupCode="x = 1", startupScript="boot.py")
    with pytest.raises(TypeError, match="startup_code or startupCode, not both"):
        sense.launch_workers(1, startup_code="x = 1", startupCode="x = 2")
    with pytest.raises(ValueError, match="unknown worker size 'huge'; the sizes are: small, medium, large"):
        sense.launch_workers(1, "huge")
    with pytest.raises(ValueError, match="unknown engine 'no-such-engine'"):
        sense.launch_workers(1, engine="no-such-engine")
    with pytest.raises(ValueError, match="positive number"):
        sense.launch_workers(0)
    with pytest.raises(FileNotFoundError, match="startup script"):
        sense.launch_workers(1, startup_script=str(tmp_path / "missing.py"))
    assert sense.get_workers() == []


def test_a_worker_that_exits_by_itself_leaves_the_list(connected):
    (worker,) = sense.launch_workers(1)
    kc = connected(worker)
    kc.execute("import os; os._exit(3)")
    deadline = time.monotonic() + 5
    while sense.get_workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sense.get_workers() == []
    (record,) = sense.stop_workers(worker["id"])
    assert record["status"] == "stopped"
    assert record["exit_status"] == 3
    assert record["error"] == "exited on its own with status 3"


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
def test_no_worker_outlives_the_process_that_launched_it(how, tmp_path):
    end = "sys.exit(0)" if how == "exit" else "os.kill(os.getpid(), signal.SIGKILL)"
    master = textwrap.dedent(
        f"""\
        import json, os, signal, sys
        import sense
        workers = sense.launch_workers(2)
        print(json.dumps([w["pid"] for w in workers]), flush=True)
        {end}
        """
    )
    # A killed master can't remove its private folder: keep it in tmp_path.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", master], capture_output=True, text=True, timeout=60, env=env)
    pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(pids) == 2
    assert wait_gone(pids) == []


def test_lists_render_as_escaped_html_tables_without_secrets():
    (worker,) = sense.launch_workers(1, env={"X": "1"})
    html = sense.get_workers()._repr_html_()
    assert "<table" in html and f"<td style=\"text-align: left; vertical-align: top\">{worker['id']}</td>" in html
    assert worker["connection"]["key"] not in html
    master_html = sense.get_master()._repr_html_()
    assert str(os.getpid()) in master_html
    sense.stop_workers()
    assert "No workers" in sense.get_workers()._repr_html_()


def test_resource_limits_follow_the_size(connected):
    (worker,) = sense.launch_workers(1, "small")
    kc = connected(worker)
    limits = run_code(kc, "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])")
    assert int(limits) == SIZES["small"]["mem_limit"] != resource.getrlimit(resource.RLIMIT_AS)[0]
    sense.stop_workers()
