"""Canvas sessions: a worker process per session, created anonymously, ended by inactivity.

Lifecycle of a session (``status``)::

    starting ──worker ready──▶ running ──DELETE / expiry / hub stop──▶ stopped
        │                        │
        └──spawn or load fails───┴──worker died──▶ failed

- A session id is ``secrets.token_urlsafe(32)``: knowing it is what lets a client poll, keep
  alive or delete the session (sessions are created without an account). The database stores
  only its SHA-256 (:func:`.db.session_key`).
- ``socket`` is ``null`` until the worker serves the canvas, then ``"host:port"``.
- A session ends :attr:`SessionManager.timeout` seconds after its last activity: an API
  interaction (create, GET) or a call on its worker (the worker's ``LIVEPANDAS_ACTIVITY`` lines,
  relayed by the pool's ``on_activity``). The culler stops expired sessions; DELETE stops one at
  once. Ended sessions are kept, answering GET with their final status, for
  :attr:`SessionManager.history` seconds.
- Caps: at most ``max_sessions`` active sessions on the hub and ``max_per_canvas`` per canvas;
  beyond them :class:`.errors.TooManySessions` (429) with the seconds until the earliest active
  session would expire as ``retry_after``.
- A hub restart does not re-adopt workers: :meth:`SessionManager.reap_recorded` kills every
  worker a previous hub recorded (if it is still that process) and marks its session stopped.
  Re-adopting would need the worker's stdout pipe, which died with the old hub, so activity
  could no longer be counted and the worker could not be told to load anything; browsers
  create a new session when theirs reports ``stopped``.

Everything here runs on the hub's event loop.
"""

import asyncio
import json
import logging
import secrets
import time

from .db import session_key
from .errors import BadRequest, NotFound, TooManySessions

__all__ = ["SessionManager"]

log = logging.getLogger("livepandas.hub")


class SessionManager:
    """Sessions of a hub over a :class:`.db.Database`, a :class:`.canvases.CanvasStore` and a worker pool.

    Parameters
    ----------
    db : Database
    canvases : CanvasStore
    pool : WorkerPool
        Anything with ``await acquire(canvas_dir, on_activity=, on_exit=)`` returning a worker
        (``.socket``, ``.state``, ``await .stop()``).
    timeout : float
        Seconds of inactivity after which a session stops.
    max_sessions, max_per_canvas : int
        Caps on active sessions (0: no cap).
    create_wait : float
        Seconds ``create`` waits for the worker before answering with ``socket: null``.
    history : float
        Seconds an ended session still answers GET.
    public_host : str
        Host reported in ``socket`` instead of the worker's own address ("" keeps it).
    """

    def __init__(
        self,
        db,
        canvases,
        pool,
        *,
        timeout=300.0,
        max_sessions=100,
        max_per_canvas=100,
        create_wait=1.0,
        history=3600.0,
        public_host="",
        logger=None,
    ):
        self.db = db
        self.canvases = canvases
        self.pool = pool
        self.timeout = timeout
        self.max_sessions = max_sessions
        self.max_per_canvas = max_per_canvas
        self.create_wait = create_wait
        self.history = history
        self.public_host = public_host
        self.log = logger or log
        self._workers = {}  # session key -> worker
        self._starting = {}  # session key -> task acquiring its worker
        self._closing = False

    # -- queries ----------------------------------------------------------------------------

    def get(self, session_id, refresh=True):
        """The session row for *session_id*; an active one is kept alive (*refresh*).

        Raises
        ------
        NotFound
            For an unknown id (or one forgotten after :attr:`history` seconds).
        """
        key = _key(session_id)
        if key is not None and refresh:
            now = time.time()
            self.db.update_session(key, only_active=True, last_activity=now, expires_at=now + self.timeout)
        row = self.db.session(key) if key is not None else None
        if row is None:
            raise NotFound("no such session (it may have ended long ago)")
        return row

    # -- create / stop ----------------------------------------------------------------------

    async def create(self, canvas_id):
        """Start a session on *canvas_id*; returns ``(session_id, row)``.

        Waits up to :attr:`create_wait` seconds for the worker, so a warm worker's socket is
        in the answer; otherwise the row says ``starting`` and the client polls.

        Raises
        ------
        BadRequest
            When *canvas_id* is missing or not an id.
        NotFound
            When there is no such canvas.
        TooManySessions
            When a cap is reached.
        """
        if self._closing:
            raise TooManySessions("the hub is shutting down", retry_after=5)
        canvas_id = _canvas_id(canvas_id)
        self.canvases.get(canvas_id)
        self._check_caps(canvas_id)
        session_id = secrets.token_urlsafe(32)
        key = session_key(session_id)
        self.db.add_session(key, canvas_id, expires_at=time.time() + self.timeout)
        task = asyncio.get_running_loop().create_task(self._start(key, canvas_id))
        task.add_done_callback(_retrieve)
        self._starting[key] = task
        if self.create_wait > 0:
            await asyncio.wait([task], timeout=self.create_wait)
            if task.done() and isinstance(_retrieve(task), TooManySessions):
                raise task.exception()  # the pool is full after all: 429, not a failed session
        self.log.info("session %s… on canvas %s: %s", key[:8], canvas_id, self.db.session(key)["status"])
        return session_id, self.db.session(key)

    def _check_caps(self, canvas_id):
        now = time.time()
        if self.max_sessions and self.db.count_active() >= self.max_sessions:
            retry = (self.db.earliest_expiry() or now + 1) - now
            raise TooManySessions(
                f"the hub runs its maximum of {self.max_sessions} sessions; try again later", retry_after=retry + 1
            )
        if self.max_per_canvas and self.db.count_active(canvas_id) >= self.max_per_canvas:
            retry = (self.db.earliest_expiry(canvas_id) or now + 1) - now
            raise TooManySessions(
                f"canvas {canvas_id} has its maximum of {self.max_per_canvas} sessions; try again later",
                retry_after=retry + 1,
            )

    async def _start(self, key, canvas_id):
        try:
            worker = await self.pool.acquire(
                self.canvases.path(canvas_id),
                on_activity=lambda *args: self._on_activity(key),
                on_exit=lambda *args: self._on_exit(key, *args),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = _one_line(exc)
            self.log.warning("session %s… on canvas %s failed to start: %s", key[:8], canvas_id, exc)
            self.db.update_session(key, only_active=True, status="failed", error=message, stopped=time.time())
            if isinstance(exc, TooManySessions):
                raise
            return
        finally:
            self._starting.pop(key, None)
        socket = worker.socket
        if self.public_host:
            socket = f"{self.public_host}:{worker.port}"
        if not self.db.update_session(
            key, only_status="starting", status="running", socket=socket, state=worker.state
        ):
            # Deleted, expired or the hub is stopping: the worker has no session any more.
            await self._stop_worker(worker)
            return
        self._workers[key] = worker

    async def delete(self, session_id):
        """Stop a session at once (idempotent for a known id).

        Raises
        ------
        NotFound
            For an unknown id.
        """
        row = self.get(session_id, refresh=False)
        await self._end(row["id"], "stopped", None)

    async def _end(self, key, status, error):
        """Mark session *key* ended and stop its worker (or the start in progress)."""
        self.db.update_session(key, only_active=True, status=status, socket=None, error=error, stopped=time.time())
        task = self._starting.pop(key, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        worker = self._workers.pop(key, None)
        if worker is not None:
            await self._stop_worker(worker)

    async def _stop_worker(self, worker):
        try:
            await worker.stop()
        except Exception:
            self.log.exception("could not stop worker %s", getattr(worker, "socket", worker))

    async def stop_canvas(self, canvas_id):
        """Stop every active session of *canvas_id* (the canvas is being deleted)."""
        rows = self.db.active_sessions(canvas_id)
        await asyncio.gather(*(self._end(row["id"], "stopped", "the canvas was deleted") for row in rows))

    # -- callbacks from the pool ------------------------------------------------------------

    def _on_activity(self, key):
        now = time.time()
        self.db.update_session(key, only_status="running", last_activity=now, expires_at=now + self.timeout)

    def _on_exit(self, key, *args):
        status = args[-1] if args and isinstance(args[-1], int) else None
        self._workers.pop(key, None)
        message = "the worker exited" + (f" with status {status}" if status is not None else "")
        ended = self.db.update_session(
            key, only_active=True, status="failed", socket=None, error=message, stopped=time.time()
        )
        if ended:
            self.log.warning("session %s…: %s", key[:8], message)

    # -- housekeeping -----------------------------------------------------------------------

    async def cull(self):
        """Stop sessions past their ``expires_at``; forget ended ones older than :attr:`history`."""
        now = time.time()
        expired = self.db.expired_sessions(now)
        for row in expired:
            self.log.info("session %s… expired after %g s without activity", row["id"][:8], self.timeout)
        await asyncio.gather(*(self._end(row["id"], "stopped", "expired") for row in expired))
        self.db.forget_sessions(now - self.history)
        return len(expired)

    def reap_recorded(self, reap):
        """Kill the workers a previous hub left (``reap(state) -> bool``); mark their sessions stopped.

        Blocking (``reap`` waits for each process to exit): run it before serving.
        Returns the number of processes killed.
        """
        killed = 0
        for row in self.db.active_sessions():
            state = json.loads(row["state"]) if row["state"] else None
            if state and reap(state):
                killed += 1
                self.log.info("killed worker pid %s left by the previous hub", state.get("pid"))
            self.db.update_session(
                row["id"], status="stopped", socket=None, error="the hub restarted", stopped=time.time()
            )
        return killed

    async def close(self):
        """Stop every session and its worker (the hub is shutting down)."""
        self._closing = True
        keys = {row["id"] for row in self.db.active_sessions()} | set(self._starting) | set(self._workers)
        await asyncio.gather(*(self._end(key, "stopped", "the hub stopped") for key in keys))


def _retrieve(task):
    """The task's exception, marked as retrieved (None if it was cancelled or succeeded)."""
    return None if task.cancelled() else task.exception()


def _key(session_id):
    if not isinstance(session_id, str) or not session_id or len(session_id) > 200:
        return None
    return session_key(session_id)


def _canvas_id(value):
    if isinstance(value, bool) or value is None or value == "":
        raise BadRequest("missing field 'canvas': the id of the canvas to start a session on")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    raise BadRequest(f"'canvas' must be a canvas id (an integer), not {value!r:.60}")


def _one_line(exc):
    """The first line of *exc*'s message (the full text, with the worker's stderr, goes to the log)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
