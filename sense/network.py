"""``sense.network_info``: how this dashboard (or this machine) can be reached.

Read from the environment a hub sets on every dashboard (see :mod:`sense`)::

    SENSE_PUBLIC_DNS        public host name          -> "public_dns"
    SENSE_PROJECT_IP        address on the project's private network -> "project_ip"
    SENSE_PORT<i>           a port of the dashboard   -> key of "public_port_mapping"
    SENSE_PUBLIC_PORT<i>    where the public DNS forwards it -> its value
    SENSE_PUBLIC_SSH_PORT   the public port of the SSH daemon -> public_port_mapping[22]
    SENSE_SSH_PASSWORD      the SSH password          -> "ssh_password"

On a hub dashboard (``SENSE_API_URL`` set) ``SENSE_PUBLIC_DNS`` and ``SENSE_PROJECT_IP`` are
required. Without a hub everything runs on this machine, so they default to ``"localhost"`` and
``"127.0.0.1"``: every port is reachable there directly, the mapping only lists ports the
environment names, and ``ssh_password`` is None unless set.
"""

import os
import re

from .errors import ConfigurationError

__all__ = ["network_info"]

_PORT_VARIABLE = re.compile(r"SENSE_PORT(\d+)\Z")


def network_info():
    """The current dashboard's contact information.

    Returns
    -------
    dict
        ``public_dns`` (str), ``public_port_mapping`` (dict of int to int: a port of this
        dashboard to the public port that reaches it on ``public_dns``; 22 is SSH),
        ``ssh_password`` (str or None) and ``project_ip`` (str, reachable from the project's
        other dashboards on any port).

    Raises
    ------
    ConfigurationError
        When a required variable is missing or a port is not an integer; the message and
        ``.variables`` name them.
    """
    env = os.environ
    on_hub = bool(env.get("SENSE_API_URL"))
    missing, malformed = [], []

    def value(name, default):
        text = env.get(name, "").strip()
        if text:
            return text
        if on_hub:
            missing.append(name)
        return default

    def port(name):
        text = env.get(name, "").strip()
        if not text:
            missing.append(name)
            return None
        try:
            number = int(text)
        except ValueError:
            number = 0
        if not 0 < number < 65536:
            malformed.append(name)
            return None
        return number

    public_dns = value("SENSE_PUBLIC_DNS", "localhost")
    project_ip = value("SENSE_PROJECT_IP", "127.0.0.1")
    mapping = {}
    indexes = sorted(int(m.group(1)) for m in map(_PORT_VARIABLE.match, env) if m)
    for i in indexes:
        local, public = port(f"SENSE_PORT{i}"), port(f"SENSE_PUBLIC_PORT{i}")
        if local is not None and public is not None:
            mapping[local] = public
    if env.get("SENSE_PUBLIC_SSH_PORT", "").strip():
        ssh = port("SENSE_PUBLIC_SSH_PORT")
        if ssh is not None:
            mapping[22] = ssh

    if missing or malformed:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if malformed:
            parts.append("not a port number: " + ", ".join(f"{n}={env[n]!r}" for n in malformed))
        raise ConfigurationError(
            "network_info() needs the dashboard's environment: " + "; ".join(parts),
            variables=missing + malformed,
        )
    return {
        "public_dns": public_dns,
        "public_port_mapping": mapping,
        "ssh_password": env.get("SENSE_SSH_PASSWORD") or None,
        "project_ip": project_ip,
    }
