"""``network_info``, ``get_auth`` and the public surface of ``sense``."""

import subprocess
import sys

import pytest

import sense
from sense.errors import ConfigurationError

HUB_NETWORK = {
    "SENSE_API_URL": "http://127.0.0.1:8000",
    "SENSE_PUBLIC_DNS": "dash-7.example.org",
    "SENSE_PROJECT_IP": "10.0.3.7",
    "SENSE_PORT1": "3000",
    "SENSE_PUBLIC_PORT1": "41000",
    "SENSE_PORT2": "8888",
    "SENSE_PUBLIC_PORT2": "41001",
    "SENSE_PUBLIC_SSH_PORT": "41022",
    "SENSE_SSH_PASSWORD": "s3cret",
}


def setenv(monkeypatch, variables):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_network_info_on_a_hub_dashboard(monkeypatch):
    setenv(monkeypatch, HUB_NETWORK)
    assert sense.network_info() == {
        "public_dns": "dash-7.example.org",
        "public_port_mapping": {3000: 41000, 8888: 41001, 22: 41022},
        "ssh_password": "s3cret",
        "project_ip": "10.0.3.7",
    }


def test_network_info_without_a_hub_describes_this_machine():
    assert sense.networkInfo() == {
        "public_dns": "localhost",
        "public_port_mapping": {},
        "ssh_password": None,
        "project_ip": "127.0.0.1",
    }


def test_network_info_on_a_hub_names_missing_variables(monkeypatch):
    setenv(monkeypatch, {"SENSE_API_URL": "http://127.0.0.1:8000", "SENSE_PORT1": "3000"})
    with pytest.raises(ConfigurationError) as info:
        sense.network_info()
    message = str(info.value)
    for name in ("SENSE_PUBLIC_DNS", "SENSE_PROJECT_IP", "SENSE_PUBLIC_PORT1"):
        assert name in message
    assert info.value.variables == ["SENSE_PUBLIC_DNS", "SENSE_PROJECT_IP", "SENSE_PUBLIC_PORT1"]
    assert isinstance(info.value, RuntimeError)


def test_network_info_names_a_malformed_port(monkeypatch):
    setenv(monkeypatch, {"SENSE_PORT4": "http", "SENSE_PUBLIC_PORT4": "41004"})
    with pytest.raises(ConfigurationError, match=r"not a port number: SENSE_PORT4='http'"):
        sense.network_info()


def test_get_auth_prefers_username_and_password(monkeypatch):
    setenv(monkeypatch, {"SENSE_USERNAME": "ada", "SENSE_PASSWORD": "pw", "SENSE_API_TOKEN": "tok"})
    assert sense.get_auth() == {"user": "ada", "pass": "pw"}


def test_get_auth_uses_the_api_token_as_the_user(monkeypatch):
    monkeypatch.setenv("SENSE_API_TOKEN", "tok")
    assert sense.getAuth() == {"user": "tok", "pass": ""}


def test_get_auth_names_what_is_missing(monkeypatch):
    with pytest.raises(ConfigurationError) as info:
        sense.get_auth()
    assert "SENSE_API_TOKEN" in str(info.value) and "SENSE_USERNAME" in str(info.value)
    monkeypatch.setenv("SENSE_USERNAME", "ada")
    with pytest.raises(ConfigurationError, match="SENSE_PASSWORD is not") as info:
        sense.get_auth()
    assert info.value.variables == ["SENSE_PASSWORD"]


def test_hub_mode_names_missing_project_variables(monkeypatch):
    monkeypatch.setenv("SENSE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SENSE_API_TOKEN", "tok")
    with pytest.raises(ConfigurationError, match="SENSE_OWNER_ID and SENSE_PROJECT_ID are not"):
        sense.get_workers()


def test_both_spellings_are_the_same_functions():
    pairs = {
        "network_info": "networkInfo",
        "get_auth": "getAuth",
        "launch_workers": "launchWorkers",
        "get_workers": "getWorkers",
        "stop_workers": "stopWorkers",
        "get_master": "getMaster",
    }
    for snake, camel in pairs.items():
        assert getattr(sense, snake) is getattr(sense, camel)
        assert snake in sense.__all__ and camel in sense.__all__
    assert callable(sense.install) and "install" in sense.__all__
    assert sorted(set(sense.__all__)) == sorted(sense.__all__)
    for name in sense.__all__:
        assert hasattr(sense, name), name


def test_importing_sense_imports_no_ipython_tornado_or_requests():
    code = (
        "import sys, sense; "
        "print(sorted(m for m in ('IPython', 'tornado', 'requests', 'jupyter_client', 'zmq') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]"
