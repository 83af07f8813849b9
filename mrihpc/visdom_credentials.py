"""Visdom login credentials, one pair per user, in a file only that user can read.

A server bound to 127.0.0.1 on a shared login node is reachable by every user of the node, and
Visdom has no login by default. ``mrihpc visdom start`` turns Visdom's login on with these
credentials: ``<cache>/visdom/credentials.json`` (``username``, ``password``), generated once
with mode 600 (the folder 700). Visdom signs its login cookie with ``~/.visdom/COOKIE_SECRET``,
made the same way when missing. Clients (the points, the follower, ``replay``) log in with the
same file: ``login`` posts Visdom's own login form and keeps the cookie in the session.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
from pathlib import Path

from mrihpc.data.cache import cache_root


def credentials_file() -> Path:
    return cache_root() / "visdom" / "credentials.json"


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by this user only (mode 600, set at creation: never briefly
    wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure() -> dict:
    """The user's credentials, generated on first use."""
    path = credentials_file()
    if not path.is_file():
        try:
            _write_private(
                path,
                json.dumps({"username": getpass.getuser(), "password": secrets.token_urlsafe(18)}),
            )
        except FileExistsError:  # another process made it first
            pass
    return load()


def load() -> dict | None:
    """The credentials when the file exists; a file others can read is refused."""
    path = credentials_file()
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); `chmod 600 {path}`")
    return json.loads(path.read_text())


def ensure_cookie_secret() -> Path:
    """Visdom's cookie signing key (it reads ``~/.visdom/COOKIE_SECRET``), created when missing."""
    from visdom.server.defaults import DEFAULT_ENV_PATH

    path = Path(DEFAULT_ENV_PATH) / "COOKIE_SECRET"
    if not path.is_file():
        try:
            _write_private(path, secrets.token_hex(32))
        except FileExistsError:
            pass
    return path


def server_credential(creds: dict) -> dict:
    """What Visdom's server compares a login with (its own double SHA-256 of the password)."""
    once = hashlib.sha256(creds["password"].encode()).hexdigest()
    return {"username": creds["username"], "password": hashlib.sha256(once.encode()).hexdigest()}


def login(session, url: str, creds: dict, timeout: float | tuple = 5.0) -> bool:
    """Log ``session`` (requests) in to the Visdom server at ``url``; True when the cookie came
    back."""
    password = hashlib.sha256(creds["password"].encode()).hexdigest()  # as Visdom's client sends it
    r = session.post(
        url.rstrip("/") + "/",
        json={"username": creds["username"], "password": password},
        timeout=timeout,
    )
    return r.ok and "user_password" in session.cookies
