"""What every benchmark script shares: a free TCP port and the machine line of its JSON."""

from __future__ import annotations

import os
import platform
import socket
import sys


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    """Host, cores, Python and, when loaded, torch: where a figure was taken."""
    line = f"{platform.node()} ({os.cpu_count()} cores), python {sys.version.split()[0]}"
    torch = sys.modules.get("torch")
    return line + (f", torch {torch.__version__}" if torch is not None else "")
