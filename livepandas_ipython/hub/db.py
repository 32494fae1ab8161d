"""The hub's database: SQLite (stdlib ``sqlite3``) in the data directory.

One file, ``<data-dir>/hub.sqlite``, in WAL mode. The schema is versioned with
``PRAGMA user_version``: :data:`MIGRATIONS` is an append-only list of SQL scripts, and opening a
database applies the ones it has not seen yet, each in its own transaction. A release that
changes the schema appends a script; a database written by a newer release is refused rather
than damaged.

Tables::

    users      (id, name, password, created)                       password: scrypt hash or NULL
    api_keys   (id, user_id, prefix, hash, note, created, last_used, revoked)
    canvases   (id, owner_id, name, functions, created, updated)   functions: JSON list
    sessions   (id, canvas_id, status, socket, state, error,
                created, last_activity, expires_at, stopped)       state: the spawner's JSON state
    projects   (id, owner_id, name, created)                       (2) Sense projects, made on first use
    dashboards (id, project_id, master_id, engine, size, status,   (2) info: how to reach it (JSON);
                error, info, state, key_prefix, created, stopped)      key_prefix: its API key

Canvas files live beside the database (see :mod:`.canvases`); session ids are stored as
SHA-256 digests (:func:`session_key`), so the file never holds a usable session token.

Threading: the hub calls this from its event loop. Every operation is one short transaction on
a local file (WAL, ``synchronous=NORMAL``: a commit is a write to the OS page cache, a few tens
of microseconds), so it does not hold the loop up noticeably; the slow work around it (password
hashing, canvas validation, file writes) runs in a thread pool. A lock makes the object safe
to share with other threads anyway.

``synchronous=NORMAL`` in WAL mode survives the hub being killed (SIGKILL) at any point; only a
power loss can drop the last commits.
"""

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time

__all__ = ["Database", "MIGRATIONS", "SCHEMA_VERSION", "session_key"]

MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password TEXT,
        created REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );
    CREATE INDEX api_keys_prefix ON api_keys(prefix);
    CREATE TABLE canvases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        functions TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX canvases_owner ON canvases(owner_id);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        canvas_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        socket TEXT,
        state TEXT,
        error TEXT,
        created REAL NOT NULL,
        last_activity REAL NOT NULL,
        expires_at REAL NOT NULL,
        stopped REAL
    );
    CREATE INDEX sessions_status ON sessions(status);
    CREATE INDEX sessions_canvas ON sessions(canvas_id);
    """,
    # 2: Sense projects and their dashboards
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created REAL NOT NULL,
        UNIQUE (owner_id, name)
    );
    CREATE TABLE dashboards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        master_id INTEGER,
        engine TEXT NOT NULL,
        size TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        info TEXT,
        state TEXT,
        key_prefix TEXT,
        created REAL NOT NULL,
        stopped REAL
    );
    CREATE INDEX dashboards_project ON dashboards(project_id);
    CREATE INDEX dashboards_status ON dashboards(status);
    """,
    # 3: log-in cookies issued before this time (a log-out) are no longer valid
    """
    ALTER TABLE users ADD COLUMN logged_out REAL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# last_used of a key is written at most this often (seconds): reads stay reads.
_KEY_TOUCH_INTERVAL = 60.0


def session_key(session_id):
    """The database key of a session: the hex SHA-256 of its (high-entropy) id."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class Database:
    """The hub's SQLite database; every method is one short transaction.

    Parameters
    ----------
    path : str
        The database file (created, with the current schema, when missing).

    Raises
    ------
    RuntimeError
        When the file was written by a newer release (its schema version is unknown here).
    """

    def __init__(self, path):
        self.path = path
        self._lock = threading.RLock()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # never world-readable, even briefly
        os.close(fd)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def close(self):
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def transaction(self):
        """``with db.transaction() as conn:`` — one IMMEDIATE transaction (committed on success)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, sql, args=()):
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _all(self, sql, args=()):
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    @property
    def version(self):
        return self._one("PRAGMA user_version")[0]

    def migrate(self):
        """Apply the migrations this database has not seen yet."""
        version = self.version
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this release understands "
                f"({SCHEMA_VERSION}); upgrade livepandas-ipython"
            )
        for number in range(version, SCHEMA_VERSION):
            with self.transaction() as conn:
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    # -- users ------------------------------------------------------------------------------

    def add_user(self, name, password_hash=None):
        """Insert a user; returns its id. Raises ``sqlite3.IntegrityError`` if the name is taken."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO users (name, password, created) VALUES (?, ?, ?)", (name, password_hash, time.time())
            )
            return cur.lastrowid

    def user_by_name(self, name):
        return self._one("SELECT * FROM users WHERE name = ?", (name,))

    def user_by_id(self, user_id):
        return self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    def set_password(self, user_id, password_hash):
        with self.transaction() as conn:
            conn.execute("UPDATE users SET password = ? WHERE id = ?", (password_hash, user_id))

    def log_out(self, user_id, when):
        """Invalidate every log-in cookie of *user_id* issued before *when* (epoch seconds)."""
        with self.transaction() as conn:
            conn.execute("UPDATE users SET logged_out = ? WHERE id = ?", (when, user_id))

    def users(self):
        return self._all("SELECT * FROM users ORDER BY name")

    # -- API keys ---------------------------------------------------------------------------

    def add_key(self, user_id, prefix, key_hash, note=""):
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (user_id, prefix, hash, note, created) VALUES (?, ?, ?, ?, ?)",
                (user_id, prefix, key_hash, note, time.time()),
            )
        return self.key(user_id, prefix)

    def key(self, user_id, prefix):
        """The live (not revoked) key of *user_id* with *prefix*, or None."""
        return self._one(
            "SELECT * FROM api_keys WHERE user_id = ? AND prefix = ? AND revoked IS NULL", (user_id, prefix)
        )

    def keys_with_prefix(self, prefix):
        """Live keys with *prefix*, with their owner's name as ``user``."""
        return self._all(
            "SELECT api_keys.*, users.name AS user FROM api_keys JOIN users ON users.id = api_keys.user_id "
            "WHERE prefix = ? AND revoked IS NULL",
            (prefix,),
        )

    def keys_of(self, user_id):
        """The live keys of *user_id*, oldest first."""
        return self._all(
            "SELECT * FROM api_keys WHERE user_id = ? AND revoked IS NULL ORDER BY created, id", (user_id,)
        )

    def revoke_key(self, user_id, prefix):
        """Revoke the live key *prefix* of *user_id*; True if there was one."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked = ? WHERE user_id = ? AND prefix = ? AND revoked IS NULL",
                (time.time(), user_id, prefix),
            )
            return cur.rowcount > 0

    def touch_key(self, key_id, last_used):
        """Record a use of a key (written at most once a minute per key)."""
        now = time.time()
        if last_used is not None and now - last_used < _KEY_TOUCH_INTERVAL:
            return
        with self.transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id))

    # -- canvases ---------------------------------------------------------------------------

    def add_canvas(self, owner_id, name, functions, before_commit=None):
        """Insert a canvas; returns its id (never reused, even after a delete).

        ``before_commit(id)`` runs inside the transaction (the files are put in place there), so
        a failure leaves no row behind.
        """
        now = time.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO canvases (owner_id, name, functions, created, updated) VALUES (?, ?, ?, ?, ?)",
                (owner_id, name, json.dumps(functions), now, now),
            )
            if before_commit is not None:
                before_commit(cur.lastrowid)
            return cur.lastrowid

    def canvas(self, canvas_id):
        return self._one(
            "SELECT canvases.*, users.name AS owner FROM canvases JOIN users ON users.id = canvases.owner_id "
            "WHERE canvases.id = ?",
            (canvas_id,),
        )

    def canvases_of(self, owner_id):
        return self._all(
            "SELECT canvases.*, users.name AS owner FROM canvases JOIN users ON users.id = canvases.owner_id "
            "WHERE owner_id = ? ORDER BY canvases.id",
            (owner_id,),
        )

    def update_canvas(self, canvas_id, name, functions):
        with self.transaction() as conn:
            conn.execute(
                "UPDATE canvases SET name = ?, functions = ?, updated = ? WHERE id = ?",
                (name, json.dumps(functions), time.time(), canvas_id),
            )

    def delete_canvas(self, canvas_id):
        with self.transaction() as conn:
            conn.execute("DELETE FROM canvases WHERE id = ?", (canvas_id,))

    # -- sessions ---------------------------------------------------------------------------

    def add_session(self, key, canvas_id, expires_at, status="starting"):
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sessions (id, canvas_id, status, created, last_activity, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, canvas_id, status, now, now, expires_at),
            )

    def session(self, key):
        return self._one("SELECT * FROM sessions WHERE id = ?", (key,))

    _SESSION_FIELDS = frozenset(
        ["status", "socket", "state", "error", "last_activity", "expires_at", "stopped"]
    )

    def update_session(self, key, *, only_active=False, only_status=None, **fields):
        """Set *fields* of session *key* (``state`` is JSON-encoded here); True if a row changed.

        With *only_active*, a session that has already ended is left alone; with *only_status*,
        only a session in that status is changed.
        """
        unknown = set(fields) - self._SESSION_FIELDS
        if unknown:
            raise TypeError(f"not session fields: {', '.join(sorted(unknown))}")
        if "state" in fields and fields["state"] is not None:
            fields["state"] = json.dumps(fields["state"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql, args = f"UPDATE sessions SET {assignments} WHERE id = ?", [*fields.values(), key]
        if only_active:
            sql += " AND status IN ('starting', 'running')"
        if only_status is not None:
            sql += " AND status = ?"
            args.append(only_status)
        with self.transaction() as conn:
            return conn.execute(sql, args).rowcount > 0

    def active_sessions(self, canvas_id=None):
        """Sessions that hold or are getting a worker (of *canvas_id*, or all)."""
        sql = "SELECT * FROM sessions WHERE status IN ('starting', 'running')"
        if canvas_id is None:
            return self._all(sql)
        return self._all(sql + " AND canvas_id = ?", (canvas_id,))

    def count_active(self, canvas_id=None):
        sql = "SELECT count(*) FROM sessions WHERE status IN ('starting', 'running')"
        if canvas_id is None:
            return self._one(sql)[0]
        return self._one(sql + " AND canvas_id = ?", (canvas_id,))[0]

    def earliest_expiry(self, canvas_id=None):
        """The smallest ``expires_at`` of the active sessions (of *canvas_id*), or None."""
        sql = "SELECT min(expires_at) FROM sessions WHERE status IN ('starting', 'running')"
        if canvas_id is None:
            return self._one(sql)[0]
        return self._one(sql + " AND canvas_id = ?", (canvas_id,))[0]

    def expired_sessions(self, now):
        return self._all(
            "SELECT * FROM sessions WHERE status IN ('starting', 'running') AND expires_at <= ?", (now,)
        )

    def forget_sessions(self, before):
        """Delete ended sessions that ended before *before*; returns how many."""
        with self.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM sessions WHERE status NOT IN ('starting', 'running') AND stopped < ?", (before,)
            )
            return cur.rowcount


    # -- projects and dashboards ------------------------------------------------------------

    def project(self, owner_id, name):
        return self._one("SELECT * FROM projects WHERE owner_id = ? AND name = ?", (owner_id, name))

    def ensure_project(self, owner_id, name):
        """The project *name* of *owner_id*, created if it does not exist yet."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO projects (owner_id, name, created) VALUES (?, ?, ?)",
                (owner_id, name, time.time()),
            )
            return conn.execute(
                "SELECT * FROM projects WHERE owner_id = ? AND name = ?", (owner_id, name)
            ).fetchone()

    _DASHBOARD_SELECT = (
        "SELECT dashboards.*, projects.name AS project, projects.owner_id AS owner_id, users.name AS owner "
        "FROM dashboards JOIN projects ON projects.id = dashboards.project_id "
        "JOIN users ON users.id = projects.owner_id"
    )

    def add_dashboard(self, project_id, engine, size, master_id=None, status="starting"):
        """Insert a dashboard; returns its id (never reused)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO dashboards (project_id, master_id, engine, size, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, master_id, engine, size, status, time.time()),
            )
            return cur.lastrowid

    def dashboard(self, dashboard_id):
        """The dashboard row (with ``project``, ``owner_id`` and ``owner``), or None."""
        return self._one(self._DASHBOARD_SELECT + " WHERE dashboards.id = ?", (dashboard_id,))

    def dashboards(self, project_id=None, *, master_id=..., status=None, owner_id=None):
        """Dashboards of *project_id* (or of *owner_id*, or all), oldest first.

        *master_id* filters by master (None: the top-level ones); *status* by a status or a
        tuple of statuses.
        """
        sql, clauses, args = self._DASHBOARD_SELECT, [], []
        if project_id is not None:
            clauses.append("dashboards.project_id = ?")
            args.append(project_id)
        if owner_id is not None:
            clauses.append("projects.owner_id = ?")
            args.append(owner_id)
        if master_id is None:
            clauses.append("dashboards.master_id IS NULL")
        elif master_id is not ...:
            clauses.append("dashboards.master_id = ?")
            args.append(master_id)
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            clauses.append(f"dashboards.status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._all(sql + " ORDER BY dashboards.id", args)

    def count_dashboards(self, owner_id=None, project_id=None):
        """Active (starting or running) dashboards of *project_id*, of *owner_id*, or of everyone."""
        sql = (
            "SELECT count(*) FROM dashboards JOIN projects ON projects.id = dashboards.project_id "
            "WHERE dashboards.status IN ('starting', 'running')"
        )
        if project_id is not None:
            return self._one(sql + " AND projects.id = ?", (project_id,))[0]
        if owner_id is None:
            return self._one(sql)[0]
        return self._one(sql + " AND projects.owner_id = ?", (owner_id,))[0]

    _DASHBOARD_FIELDS = frozenset(["status", "error", "info", "state", "key_prefix", "stopped"])

    def update_dashboard(self, dashboard_id, *, only_active=False, **fields):
        """Set *fields* of a dashboard (``info`` and ``state`` are JSON-encoded here); True if a row changed.

        With *only_active*, a dashboard that has already ended is left alone.
        """
        unknown = set(fields) - self._DASHBOARD_FIELDS
        if unknown:
            raise TypeError(f"not dashboard fields: {', '.join(sorted(unknown))}")
        for name in ("info", "state"):
            if fields.get(name) is not None:
                fields[name] = json.dumps(fields[name])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE dashboards SET {assignments} WHERE id = ?"
        if only_active:
            sql += " AND status IN ('starting', 'running')"
        with self.transaction() as conn:
            return conn.execute(sql, [*fields.values(), dashboard_id]).rowcount > 0

    def forget_dashboards(self, before):
        """Delete ended dashboards that ended before *before*; returns how many."""
        with self.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM dashboards WHERE status NOT IN ('starting', 'running') AND stopped < ?", (before,)
            )
            return cur.rowcount


def _statements(script):
    """Split a migration script into statements (no ';' inside our own SQL literals)."""
    return [part.strip() for part in script.split(";") if part.strip()]
