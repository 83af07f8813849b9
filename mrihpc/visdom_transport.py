"""Posting visdom messages without ever holding up training.

Visdom's client posts with no timeout (a hung server blocks it forever) and its websocket
thread retries forever once the server is gone. Here, messages are already formatted and
logged by the time they arrive (see ``monitors.visdom``); a daemon thread posts them with a
short timeout, and after a failure drops what comes for a back-off period (doubling up to a
limit) instead of trying again at every step. Nothing is lost: the per-point log holds every
call, and ``replay`` sends a log to a server later.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import requests

from mrihpc.paths import read_jsonl


class Transport:
    """POSTs ``(endpoint, message)`` to a visdom server: short timeout, back-off after failure.
    A server with Visdom's login on refuses a request without its cookie (HTTP 400): the
    transport then logs in with the user's credentials file, once, and sends again."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        backoff_s: float = 30.0,
        max_backoff_s: float = 300.0,
    ):
        self.url = url.rstrip("/")
        self.timeout = (min(timeout_s, 1.0), timeout_s)  # (connect, read)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.session = requests.Session()
        self.quiet_until = 0.0
        self.current_backoff = backoff_s
        self.sent = self.failed = self.refused = self.skipped = 0
        self.last_error: str | None = None

    def post(self, endpoint: str, msg: dict) -> bool:
        if time.monotonic() < self.quiet_until:
            self.skipped += 1
            return False
        try:
            r = self.session.post(
                f"{self.url}/{endpoint}", data=json.dumps(msg), timeout=self.timeout
            )
            if r.status_code == 400 and self._login():
                r = self.session.post(
                    f"{self.url}/{endpoint}", data=json.dumps(msg), timeout=self.timeout
                )
        except requests.RequestException as e:
            self.failed += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self.quiet_until = time.monotonic() + self.current_backoff
            self.current_backoff = min(self.current_backoff * 2, self.max_backoff_s)
            return False
        self.current_backoff = self.backoff_s
        if not r.ok:  # the server answered: a bad message, not an outage, so no back-off
            self.refused += 1
            self.last_error = f"HTTP {r.status_code} on /{endpoint}"
            return False
        self.sent += 1
        return True

    def _login(self) -> bool:
        """Log in with the user's credentials (if there are any and the cookie is not already
        set)."""
        from mrihpc import visdom_credentials as credentials

        creds = credentials.load()
        if creds is None or "user_password" in self.session.cookies:
            return False
        return credentials.login(self.session, self.url, creds, self.timeout)


class Sender:
    """A daemon thread draining a bounded queue into a Transport; ``submit`` never blocks."""

    def __init__(self, transport: Transport, capacity: int = 10_000):
        self.transport = transport
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="mrihpc-visdom", daemon=True)
        self.thread.start()

    def submit(self, endpoint: str, msg: dict) -> None:
        try:
            self.queue.put_nowait((endpoint, msg))
        except queue.Full:  # the log still has it
            self.dropped += 1

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            self.transport.post(*item)
            self.queue.task_done()
        self.queue.task_done()

    def close(self, wait_s: float = 5.0) -> None:
        """Let the queue drain for at most ``wait_s`` (a hung server costs no more), then stop."""
        deadline = time.monotonic() + wait_s
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self.thread.join(timeout=max(0.0, deadline - time.monotonic()))


def read_log(path: Path) -> list[tuple[str, dict]]:
    """The calls of a visdom log (``[endpoint, message]`` per line); a torn last line is ignored."""
    return [
        (entry[0], entry[1])
        for entry in read_jsonl(path)
        if isinstance(entry, list) and len(entry) == 2
    ]


def replay(logs: list[Path], url: str, timeout_s: float = 30.0) -> dict:
    """Send every call of ``logs`` in order, then save the envs they touched.

    Each window's first call creates (replaces) it and later ones append to it, so replaying
    twice gives the same windows, not doubled ones. Stops at the first failure.
    """
    transport = Transport(url, timeout_s=timeout_s, backoff_s=0)
    envs: list[str] = []
    calls = 0
    for path in logs:
        for endpoint, msg in read_log(path):
            if not transport.post(endpoint, msg):
                raise ConnectionError(f"{url}: {transport.last_error} (replaying {path})")
            calls += 1
            if msg.get("eid") and msg["eid"] not in envs:
                envs.append(msg["eid"])
    if envs and not transport.post("save", {"data": envs}):
        raise ConnectionError(f"{url}: saving {envs}: {transport.last_error}")
    return {"calls": calls, "envs": envs, "logs": len(logs)}
