"""The hub backend: workers are dashboards of a hub, managed through its REST API.

``<SENSE_API_URL>/users/<SENSE_OWNER_ID>/projects/<SENSE_PROJECT_ID>/dashboards/``:
``POST`` launches one dashboard (JSON ``{"engine", "size", "startup_script", "startup_code",
"env", "master_id"}``), ``GET`` lists them, ``GET <id>`` reads one and ``PATCH <id>`` with
``{"status": "stopped"}`` stops it; HTTP Basic auth from :func:`sense.get_auth`.

The master is ``SENSE_MASTER_ID`` when this dashboard is a worker, else ``SENSE_DASHBOARD_ID``
(this dashboard), else None: a client outside any dashboard launches top-level dashboards, and
its "workers" are the project's running top-level dashboards.

A ``startup_script`` that exists on this machine is sent by its absolute path (the hub runs
dashboards on its own machine); any other is a path in the project's folder on the hub. A launch
that fails part-way (a POST refused, an interrupt) stops the dashboards it already created.
"""

import concurrent.futures
import os
import time
import urllib.parse

from ._backend import Backend, parse_id, same_id
from .auth import get_auth
from .display import LaunchProgress, ProgressDisplay, Record, Records
from .errors import ConfigurationError, HubError, UnknownWorkerError

__all__ = ["HubBackend"]

_PENDING = ("starting", "pending", "launching")


class HubBackend(Backend):
    """Dashboards of one project on a hub, for the master this process belongs to.

    Parameters
    ----------
    api_url, owner, project : str
        Where the dashboards API is.
    auth : dict
        ``{"user", "pass"}`` for HTTP Basic.
    master_id : int or str or None
        The master whose workers this manages.
    timeout : float
        Seconds for each HTTP request.
    start_timeout : float
        Seconds to wait for a launched dashboard to leave its starting status.
    """

    kind = "hub"

    def __init__(self, api_url, owner, project, auth, master_id=None, timeout=30.0, start_timeout=60.0):
        self.api_url = api_url.rstrip("/")
        self.owner = owner
        self.project = project
        self.auth = (auth["user"], auth["pass"])
        self.master_id = master_id
        self.timeout = timeout
        self.start_timeout = start_timeout
        quote = urllib.parse.quote
        self.base_url = f"{self.api_url}/users/{quote(owner, safe='')}/projects/{quote(project, safe='')}/dashboards/"

    @classmethod
    def from_environment(cls):
        env = os.environ
        missing = [name for name in ("SENSE_OWNER_ID", "SENSE_PROJECT_ID") if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"SENSE_API_URL is set, so the hub's dashboards API is used, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not",
                variables=missing,
            )
        master_id = parse_id(env.get("SENSE_MASTER_ID")) or parse_id(env.get("SENSE_DASHBOARD_ID"))
        return cls(env["SENSE_API_URL"], env["SENSE_OWNER_ID"], env["SENSE_PROJECT_ID"], get_auth(), master_id)

    # -- HTTP ---------------------------------------------------------------------------------

    def _request(self, method, url, json=None):
        import requests

        try:
            response = requests.request(method, url, json=json, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise HubError(f"cannot reach the hub at {self.api_url}: {exc}", url=url) from None
        if response.status_code >= 400:
            kind = "Client" if response.status_code < 500 else "Server"
            raise HubError(
                f"{response.status_code} {kind} Error: {response.reason} for url: {url} — {_message(response)}",
                status=response.status_code,
                url=url,
                response=response,
            )
        try:
            return response.json()
        except ValueError:
            raise HubError(
                f"the hub answered {method} {url} with something that is not JSON", status=response.status_code, url=url
            ) from None

    def _dashboard_url(self, dashboard_id):
        return self.base_url + urllib.parse.quote(str(dashboard_id), safe="")

    # -- Backend --------------------------------------------------------------------------------

    def launch(self, n, size, engine, startup_script, startup_code, env):
        if startup_script and os.path.isfile(os.path.expanduser(startup_script)):
            # A file here: the hub (on this machine) runs it by its absolute path. Otherwise the
            # hub looks for it in the project's folder.
            startup_script = os.path.abspath(os.path.expanduser(startup_script))
        body = {
            "engine": engine,
            "size": size,
            "startup_script": startup_script or None,
            "startup_code": startup_code or None,
            "env": env,
            "master_id": self.master_id,
        }
        progress = LaunchProgress(n, engine, size)
        shown = ProgressDisplay(progress)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, 16)) as pool:
            records = self._post_all(pool, n, body)
            try:
                records = self._wait_started(pool, records, progress, shown)
            except BaseException:
                # Interrupted (or the hub went away): no dashboard of this call may keep running.
                self._stop_quietly(pool, [r["id"] for r in records])
                raise
        progress.finish()
        shown.update()
        return Records(Record(r) for r in records)

    def _post_all(self, pool, n, body):
        """POST *n* dashboards at once; if any POST fails (or the call is interrupted), stop the
        ones that were created and raise."""
        futures = [pool.submit(self._request, "POST", self.base_url, json=body) for _ in range(n)]
        try:
            concurrent.futures.wait(futures)
        except BaseException:
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)  # those already sent: their dashboards must be stopped
            self._stop_quietly(pool, [f.result()["id"] for f in futures if _succeeded(f)])
            raise
        errors = [f.exception() for f in futures if not _succeeded(f)]
        if errors:
            self._stop_quietly(pool, [f.result()["id"] for f in futures if _succeeded(f)])
            raise errors[0]
        return [f.result() for f in futures]

    def _stop_quietly(self, pool, ids):
        def stop(dashboard_id):
            try:
                self._request("PATCH", self._dashboard_url(dashboard_id), json={"status": "stopped"})
            except HubError:
                pass

        list(pool.map(stop, ids))

    def _wait_started(self, pool, records, progress, shown):
        """Poll the new dashboards until none is starting (or :attr:`start_timeout` passed)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            for i, record in enumerate(records):
                status = record.get("status")
                progress.set(i, "starting" if status in _PENDING else status, record.get("error"))
            shown.update()
            pending = [i for i, r in enumerate(records) if r.get("status") in _PENDING]
            if not pending or time.monotonic() > deadline:
                return records
            time.sleep(0.2)
            fresh = pool.map(lambda i: self._request("GET", self._dashboard_url(records[i]["id"])), pending)
            for i, record in zip(pending, fresh):
                records[i] = record

    def _all(self, query=""):
        records = self._request("GET", self.base_url + ("?" + query if query else ""))
        if isinstance(records, dict):  # a paginated or wrapped list
            records = records.get("dashboards") or records.get("items") or []
        return records

    def workers(self):
        master = "" if self.master_id is None else self.master_id
        query = urllib.parse.urlencode({"status": "running", "master_id": master})
        return Records(
            Record(r)
            for r in self._all(query)
            if r.get("status") == "running"
            and (same_id(r.get("master_id"), self.master_id) or (self.master_id is None and r.get("master_id") is None))
        )

    def find(self, worker_id):
        try:
            return Record(self._request("GET", self._dashboard_url(worker_id)))
        except HubError as exc:
            if exc.status == 404:
                raise UnknownWorkerError(
                    f"project {self.project!r} of {self.owner} on the hub has no dashboard {worker_id!r}",
                    ids=[worker_id],
                ) from None
            raise

    def stop(self, ids):
        if not ids:
            ids = [r["id"] for r in self.workers()]
        if not ids:
            return Records()
        ids = list({str(i): i for i in ids}.values())
        known = {str(r.get("id")) for r in self._all()}
        unknown = [i for i in ids if str(i) not in known]
        if unknown:
            names = ", ".join(map(repr, unknown))
            noun = "id" if len(unknown) == 1 else "ids"
            raise UnknownWorkerError(
                f"project {self.project!r} of {self.owner} on the hub has no dashboard with the {noun} {names}",
                ids=unknown,
            )
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(ids), 16)) as pool:
            records = pool.map(
                lambda i: self._request("PATCH", self._dashboard_url(i), json={"status": "stopped"}), ids
            )
            return Records(Record(r) for r in records)

    def master(self):
        if self.master_id is None:
            return Record(id=None, engine=None, size=None, status="running", master_id=None, created_at=None)
        return self.find(self.master_id)


def _succeeded(future):
    return future.done() and not future.cancelled() and future.exception() is None


def _message(response):
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or "(empty body)"
    if isinstance(body, dict):
        for key in ("message", "error", "exception", "detail"):
            if body.get(key):
                return str(body[key])
    return str(body)[:200]
