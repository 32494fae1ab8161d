"""``sense.install``: real pip runs installing a package built from a folder in tmp_path.

The package builds with a tiny in-tree PEP 517 backend (no setuptools, no wheel, no network), so
``--no-index --no-build-isolation`` installs it offline.
"""

import importlib
import os
import sys
import textwrap

import pytest

import sense
from sense.install import pip_arguments

BACKEND = '''
"""A minimal PEP 517 backend: one pure-Python package, as a wheel."""
import base64, hashlib, os, zipfile

NAME, VERSION = {name!r}, "1.0"
DIST = f"{{NAME}}-{{VERSION}}.dist-info"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{{path}},sha256={{digest}},{{len(data)}}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    files = {{}}
    for filename in sorted(os.listdir(os.path.join(here, NAME))):
        with open(os.path.join(here, NAME, filename), "rb") as f:
            files[f"{{NAME}}/{{filename}}"] = f.read()
    files[f"{{DIST}}/METADATA"] = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n".encode()
    files[f"{{DIST}}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = [_record_line(p, d) for p, d in files.items()] + [f"{{DIST}}/RECORD,,"]
    files[f"{{DIST}}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel
'''


def make_project(root, name):
    """A folder with a pyproject.toml whose package *name* sets ``VALUE = 42``."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = []
            build-backend = "tinybackend"
            backend-path = ["."]
            """
        )
    )
    (root / "tinybackend.py").write_text(BACKEND.format(name=name))
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("VALUE = 42\n")
    return root


@pytest.fixture
def isolated_imports(monkeypatch):
    """Undo install()'s additions to sys.path and forget the test packages afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("sense_tiny_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def test_pip_arguments_map_flags_and_arguments_as_the_seed_says():
    assert pip_arguments(["U", "use-mirrors"], {"d": "./downloads", "mirrors": "http://URL"}) == [
        "-U",
        "--use-mirrors",
        "-d",
        "./downloads",
        "--mirrors=http://URL",
    ]
    assert pip_arguments("U") == ["-U"]
    assert pip_arguments(["--pre"], {"--index-url": "http://x"}) == ["--pre", "--index-url", "http://x"]


def test_install_into_the_project_packages_is_importable_at_once(tmp_path, monkeypatch, capsys, isolated_imports):
    project = make_project(tmp_path / "src", "sense_tiny_project")
    packages = tmp_path / "project-packages"
    monkeypatch.setenv("SENSE_PROJECT_PACKAGES", str(packages))
    with pytest.raises(ImportError):
        importlib.import_module("sense_tiny_project")

    assert sense.install(str(project), flags=["no-index", "no-build-isolation"]) is None

    assert (packages / "sense_tiny_project" / "__init__.py").is_file()
    assert str(packages) in sys.path
    assert importlib.import_module("sense_tiny_project").VALUE == 42
    output = capsys.readouterr().out
    assert "Successfully installed sense_tiny_project-1.0" in output  # pip's output was shown


def test_flags_and_arguments_reach_pip(tmp_path, monkeypatch, capsys, isolated_imports):
    project = make_project(tmp_path / "src", "sense_tiny_flags")
    packages = tmp_path / "project-packages"
    monkeypatch.setenv("SENSE_PROJECT_PACKAGES", str(packages))
    target = tmp_path / "chosen"

    # A long argument (--target=DIR) replaces the project directory; flags become --no-*.
    sense.install(str(project), flags=["no-deps", "no-index", "no-build-isolation"], arguments={"target": str(target)})

    assert (target / "sense_tiny_flags" / "__init__.py").is_file()
    assert not packages.exists()
    assert importlib.import_module("sense_tiny_flags").VALUE == 42
    assert "Successfully installed sense_tiny_flags-1.0" in capsys.readouterr().out

    # A one-letter argument (-t DIR) and a one-letter flag (-q, which pip obeys: no output).
    other = tmp_path / "other"
    sense.install(str(project), flags=["q", "no-index", "no-build-isolation"], arguments={"t": str(other)})
    assert (other / "sense_tiny_flags" / "__init__.py").is_file()
    assert "Successfully installed" not in capsys.readouterr().out


def test_failing_install_raises_with_pips_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SENSE_PROJECT_PACKAGES", str(tmp_path / "packages"))
    with pytest.raises(sense.InstallError) as info:
        sense.install("sense-no-such-package-anywhere", flags=["no-index"])
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.returncode not in (0, None)
    assert "No matching distribution found for sense-no-such-package-anywhere" in str(error)
    assert "pip install sense-no-such-package-anywhere failed" in str(error)
    assert error.command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--no-index" in error.command
    # The same lines were streamed while pip ran.
    assert "No matching distribution found" in capsys.readouterr().out


def test_install_needs_a_package_name():
    with pytest.raises(ValueError, match="needs a package name"):
        sense.install("")


def test_install_never_uses_a_shell(tmp_path, monkeypatch, isolated_imports):
    # A name with shell syntax reaches pip as one argument: pip rejects it, no shell runs it.
    marker = tmp_path / "ran"
    monkeypatch.setenv("SENSE_PROJECT_PACKAGES", str(tmp_path / "packages"))
    with pytest.raises(sense.InstallError):
        sense.install(f"x; touch {marker}", flags=["no-index"])
    assert not marker.exists()
    assert not os.path.exists(str(marker))
