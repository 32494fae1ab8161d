"""``sense.install``: pip, run from the kernel, into the place the running code can import from.

Where packages go, in order:

1. ``SENSE_PROJECT_PACKAGES`` when set (on a hub dashboard: the project's shared package
   directory, which every dashboard and worker of the project has on its path) — ``--target``;
2. else the active virtual environment (``sys.prefix != sys.base_prefix``);
3. else the user site (``--user``).

A location the caller chooses in *flags*/*arguments* (``target``/``t``, ``user``, ``prefix``,
``root``) replaces that choice. pip runs as ``sys.executable -m pip install``, never through a
shell; its output is copied line by line to ``sys.stdout`` as it arrives, so a notebook shows it
live. Afterwards the import caches are invalidated and the install location is put on
``sys.path`` (with its ``.pth`` files), so the package imports in the same process at once. A
module that was already imported is not reloaded.
"""

import collections
import importlib
import os
import site
import subprocess
import sys

from .errors import InstallError

__all__ = ["install", "pip_arguments"]

_TAIL_LINES = 25
# Options that choose where pip installs; any of them means the caller decided.
_LOCATION_OPTIONS = {"target", "t", "user", "prefix", "root"}


def _option(name, value=None):
    """``-x`` / ``--name`` for a flag, ``["-x", value]`` / ``["--name=value"]`` for an argument."""
    name = str(name)
    if name.startswith("-"):  # already spelled as an option: keep it
        return [name] if value is None else [name, str(value)]
    if len(name) == 1:
        return [f"-{name}"] if value is None else [f"-{name}", str(value)]
    return [f"--{name}"] if value is None else [f"--{name}={value}"]


def pip_arguments(flags=(), arguments=None):
    """The pip options for *flags* and *arguments*, as :func:`install` passes them.

    Examples
    --------
    >>> pip_arguments(["U", "use-mirrors"], {"d": "./downloads", "mirrors": "http://URL"})
    ['-U', '--use-mirrors', '-d', './downloads', '--mirrors=http://URL']
    """
    if isinstance(flags, str):
        flags = [flags]
    argv = []
    for flag in flags:
        argv += _option(flag)
    for name, value in (arguments or {}).items():
        argv += _option(name, value)
    return argv


def install(package_name, flags=[], arguments={}):  # noqa: B006 - the seed's signature, never mutated
    """Install a package with pip, where this kernel (and, on a hub, the project) imports from.

    Parameters
    ----------
    package_name : str or list of str
        What to install, as pip takes it: a name, a requirement (``"pkg>=1.2"``), a path or a
        URL; a list installs several.
    flags : list of str, optional
        pip flags: ``["U", "use-mirrors"]`` becomes ``-U --use-mirrors`` (one letter: ``-x``,
        longer: ``--name``).
    arguments : dict, optional
        pip options with a value: ``{"d": "./downloads", "mirrors": URL}`` becomes
        ``-d ./downloads --mirrors=URL``.

    Raises
    ------
    InstallError
        When pip fails; the message ends with the last lines pip printed.

    Examples
    --------
    >>> import sense
    >>> sense.install("beautifulsoup4", flags=["U"])  # doctest: +SKIP
    """
    packages = [package_name] if isinstance(package_name, str) else list(package_name)
    if not packages or not all(isinstance(p, str) and p.strip() for p in packages):
        raise ValueError(f"install() needs a package name, not {package_name!r}")
    options = pip_arguments(flags, arguments)
    if isinstance(flags, str):
        flags = [flags]
    chosen = {str(name).lstrip("-") for name in [*flags, *(arguments or {})]}
    location = []
    target = None
    if not chosen & _LOCATION_OPTIONS:
        target = os.environ.get("SENSE_PROJECT_PACKAGES") or None
        if target:
            target = os.path.abspath(os.path.expanduser(target))
            location = ["--target", target]
        elif sys.prefix == sys.base_prefix:
            location = ["--user"]
    else:
        target = _chosen_target(flags, arguments)
    command = [sys.executable, "-m", "pip", "install", *location, *options, *packages]

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # pip's lines must arrive as it prints them
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    tail = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        errors="replace",
        bufsize=1,
    )
    with proc:
        try:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                sys.stdout.write(line)
                sys.stdout.flush()
        except BaseException:  # KeyboardInterrupt in a notebook: don't leave pip running
            proc.kill()
            raise
        returncode = proc.wait()
    if returncode != 0:
        output = "\n".join(line for line in tail if line.strip())
        last = "\n".join(output.splitlines()[-8:])
        raise InstallError(
            f"pip install {' '.join(packages)} failed with exit status {returncode}:\n{last}",
            returncode=returncode,
            output=output,
            command=command,
        )
    _make_importable(target, user="--user" in location or "user" in chosen)


def _chosen_target(flags, arguments):
    for name in ("target", "t"):
        for key, value in (arguments or {}).items():
            if str(key).lstrip("-") == name:
                return os.path.abspath(os.path.expanduser(str(value)))
    return None


def _make_importable(target, user):
    if target:
        if target not in sys.path:
            sys.path.insert(0, target)
        site.addsitedir(target)  # its .pth files; the entry is already on sys.path
    if user:
        user_site = site.getusersitepackages()
        # site only adds the user site at startup if it existed then.
        if os.path.isdir(user_site) and user_site not in sys.path:
            site.addsitedir(user_site)
    importlib.invalidate_caches()
