"""``sense.get_auth``: credentials for the hub's REST API, from the environment.

``SENSE_USERNAME`` and ``SENSE_PASSWORD`` when both are set, else ``SENSE_API_TOKEN`` as the
user with an empty password (HTTP Basic, as the hub accepts an API key).
"""

import os

from .errors import ConfigurationError

__all__ = ["get_auth"]


def get_auth():
    """HTTP Basic credentials for the hub's REST API.

    Returns
    -------
    dict
        ``{"user": ..., "pass": ...}``; use it as ``requests.get(url, auth=(a["user"], a["pass"]))``.

    Raises
    ------
    ConfigurationError
        When neither ``SENSE_API_TOKEN`` nor ``SENSE_USERNAME`` and ``SENSE_PASSWORD`` are set.
    """
    env = os.environ
    user, password = env.get("SENSE_USERNAME"), env.get("SENSE_PASSWORD")
    if user and password is not None:
        return {"user": user, "pass": password}
    token = env.get("SENSE_API_TOKEN")
    if token:
        return {"user": token, "pass": ""}
    if user:
        missing = ["SENSE_PASSWORD"]
        message = "SENSE_USERNAME is set but SENSE_PASSWORD is not (or set SENSE_API_TOKEN)"
    elif password is not None:
        missing = ["SENSE_USERNAME"]
        message = "SENSE_PASSWORD is set but SENSE_USERNAME is not (or set SENSE_API_TOKEN)"
    else:
        missing = ["SENSE_API_TOKEN", "SENSE_USERNAME", "SENSE_PASSWORD"]
        message = "no hub credentials: set SENSE_API_TOKEN, or SENSE_USERNAME and SENSE_PASSWORD"
    raise ConfigurationError(message, variables=missing)
