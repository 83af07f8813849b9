"""Monitors: ``log(metrics, step)`` and ``close()``, nothing else.

``metrics`` always has ``kind`` ("step" or "epoch"). A monitor never raises into the
training loop: the Trainer calls them through ``Monitors``, which catches and reports.
"""

from __future__ import annotations

import sys
from typing import Protocol


class Monitor(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...

    def close(self) -> None: ...


class Monitors:
    """Fans out to several monitors; one failing monitor never stops training or the others."""

    def __init__(self, monitors: list[Monitor]):
        self.monitors = monitors

    def log(self, metrics: dict, step: int) -> None:
        for m in self.monitors:
            try:
                m.log(metrics, step)
            except Exception as e:  # noqa: BLE001 - a monitor must not cost a run
                print(f"[mrihpc] monitor {type(m).__name__} failed: {e}", file=sys.stderr)

    def close(self) -> None:
        for m in self.monitors:
            try:
                m.close()
            except Exception as e:  # noqa: BLE001
                print(f"[mrihpc] monitor {type(m).__name__} failed to close: {e}", file=sys.stderr)
