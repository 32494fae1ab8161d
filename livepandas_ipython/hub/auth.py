"""Users, API keys and passwords: generation, salted hashes, constant-time checks.

Credentials a client may send (``Authorization`` header)::

    APIKey <user>:<key>          the canvas and key APIs
    Basic base64(<user>:<password>)   the Sense API: a user's password (or one of their keys)
    Basic base64(<key>:)              the Sense API: an API key alone as the user name

Keys are ``secrets.token_urlsafe(32)`` (256 random bits). The database keeps, per key, its first
:data:`PREFIX_LENGTH` characters (the *prefix*, shown in listings and used to revoke it) and a
salted SHA-256 of the whole key. A fast hash is enough for keys: with 256 bits of entropy there is
nothing to brute-force, and a slow hash would cost every API request tens of milliseconds (the
choice JupyterHub makes for its generated tokens too). Passwords are chosen by people, so they get
a memory-hard, deliberately slow hash: ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte salt);
callers on an event loop run :func:`check_password`/:func:`hash_password` in a thread.

Every comparison of secrets uses :func:`hmac.compare_digest`.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import sqlite3

from .errors import BadRequest, Conflict, Unauthorized

__all__ = [
    "PREFIX_LENGTH",
    "new_key",
    "key_prefix",
    "hash_key",
    "check_key",
    "hash_password",
    "check_password",
    "parse_authorization",
    "validate_username",
    "Authenticator",
]

PREFIX_LENGTH = 8
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Checked against when a user has no password or does not exist, so a failed Basic login takes
# as long as one with a real user (no user enumeration by timing).
_DUMMY_PASSWORD_HASH = None


def new_key():
    """A fresh API key (URL-safe, 43 characters, 256 random bits)."""
    return secrets.token_urlsafe(32)


def key_prefix(key):
    """The public part of *key*: what listings show and revocation takes."""
    return key[:PREFIX_LENGTH]


def hash_key(key, salt=None):
    """``"sha256$<salt hex>$<digest hex>"`` for an API key (see the module docstring for why SHA-256)."""
    salt = salt if salt is not None else secrets.token_hex(8)
    digest = hashlib.sha256((salt + key).encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256${salt}${digest}"


def check_key(key, stored):
    """True when *key* hashes to *stored* (constant-time comparison)."""
    try:
        algorithm, salt, _ = stored.split("$", 2)
    except (AttributeError, ValueError):
        return False
    if algorithm != "sha256":
        return False
    return hmac.compare_digest(hash_key(key, salt).encode(), stored.encode())


def hash_password(password, salt=None, **params):
    """``"scrypt$n$r$p$<salt b64>$<hash b64>"`` for *password* (slow on purpose: ~50 ms)."""
    params = {**_SCRYPT, **params}
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, dklen=32, **params)
    b64 = base64.b64encode
    return f"scrypt${params['n']}${params['r']}${params['p']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password, stored):
    """True when *password* matches *stored*; a missing hash (None) never matches but costs the same."""
    global _DUMMY_PASSWORD_HASH
    if not stored:
        if _DUMMY_PASSWORD_HASH is None:
            _DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))
        check_password(password, _DUMMY_PASSWORD_HASH)
        return False
    try:
        algorithm, n, r, p, salt, _ = stored.split("$")
        if algorithm != "scrypt":
            return False
        expected = hash_password(password, base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(expected.encode(), stored.encode())


def validate_username(name):
    """Return *name* if it is a valid user name (letters, digits, ``.``, ``_``, ``-``; 1-64), else raise BadRequest."""
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise BadRequest(
            "a user name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def parse_authorization(header):
    """Split an ``Authorization`` header into ``(scheme, user, secret)``.

    *scheme* is ``"apikey"`` or ``"basic"`` (lower case); returns None for no header. For Basic
    with an empty password, *user* is what the client sent as the user name (maybe a key).

    Raises
    ------
    Unauthorized
        For a malformed header or another scheme.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "apikey":
        user, sep, key = value.partition(":")
        if not sep or not user or not key:
            raise Unauthorized("malformed Authorization header: expected 'APIKey <user>:<key>'")
        return "apikey", user, key
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Authorization header: Basic credentials are not base64 UTF-8") from None
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise Unauthorized("malformed Authorization header: expected Basic base64(<user>:<password>)")
        return "basic", user, password
    raise Unauthorized("unsupported Authorization scheme: use 'APIKey <user>:<key>'")


class Authenticator:
    """User and key management over a :class:`.db.Database`.

    Parameters
    ----------
    db : Database
    """

    def __init__(self, db):
        self.db = db

    # -- users and keys ---------------------------------------------------------------------

    def create_user(self, name, password=None):
        """Create user *name* (with *password*, optional) and a first API key.

        Returns
        -------
        (user, key) : (sqlite3.Row, str)
            The user row and the new key, shown this once.

        Raises
        ------
        BadRequest
            For an invalid name.
        Conflict
            When the name is taken.
        """
        validate_username(name)
        password_hash = hash_password(password) if password else None
        try:
            user_id = self.db.add_user(name, password_hash)
        except sqlite3.IntegrityError:
            raise Conflict(f"user {name!r} already exists") from None
        _, key = self.create_key(user_id, note="created with the user")
        return self.db.user_by_id(user_id), key

    def create_key(self, user_id, note=""):
        """A new API key for *user_id*: returns ``(row, key)``; only the hash is stored."""
        for _ in range(5):  # prefixes are 48 random bits: a clash with the same user is a fluke
            key = new_key()
            if self.db.key(user_id, key_prefix(key)) is None:
                break
        row = self.db.add_key(user_id, key_prefix(key), hash_key(key), note)
        return row, key

    # -- checks -----------------------------------------------------------------------------

    def user_for_key(self, key, user=None):
        """The user row owning live *key* (and named *user*, when given), or None."""
        if not key or len(key) < PREFIX_LENGTH:
            return None
        for row in self.db.keys_with_prefix(key_prefix(key)):
            if (user is None or row["user"] == user) and check_key(key, row["hash"]):
                self.db.touch_key(row["id"], row["last_used"])
                return self.db.user_by_id(row["user_id"])
        return None

    def check_basic(self, user, password):
        """The user row for Basic credentials, or None. Blocking (scrypt): run it off the loop."""
        if password == "":
            return self.user_for_key(user)
        row = self.db.user_by_name(user)
        if row is not None:
            by_key = self.user_for_key(password, user=user)
            if by_key is not None:
                return by_key
        if check_password(password, row["password"] if row is not None else None):
            return row
        return None
