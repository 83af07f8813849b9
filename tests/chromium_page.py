"""Headless Chromium driven over the DevTools protocol (websocket-client, which visdom already
needs): set a cookie, open a page, evaluate JavaScript in it, take a screenshot. Enough to look
at a Visdom env behind its login the way a user's browser does."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Any, Callable

import websocket


class ChromiumPage:
    def __init__(self, chromium: str, size: str = "1600,1400"):
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={size}",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile.name}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # its helper processes share the group
        port = None
        deadline = time.time() + 30
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
        assert port, "chromium did not open its DevTools port"
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events in between are skipped)."""
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.enable")
        assert self.call("Network.setCookie", url=url, name=name, value=value).get("success", True)

    def login_visdom(self, url: str, username: str, password: str) -> None:
        """Log in as Visdom's login form does, and hand the browser the cookie it returns."""
        import requests

        from mrihpc import visdom_credentials as credentials

        session = requests.Session()
        base = url.split("/env/")[0]
        assert credentials.login(session, base, {"username": username, "password": password})
        self.set_cookie(base + "/", "user_password", session.cookies["user_password"])

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def wait_for(
        self, probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30
    ) -> Any:
        """Poll ``probe`` until ``done(value)`` or the timeout; returns the last value."""
        deadline = time.time() + timeout
        value = probe()
        while not done(value) and time.time() < deadline:
            time.sleep(0.5)
            value = probe()
        time.sleep(1.0)  # let the plots draw before a screenshot
        return probe()

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def __enter__(self) -> "ChromiumPage":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.ws.close()
        finally:  # the whole group: chromium's helpers would go on writing into the profile
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.profile.cleanup()
