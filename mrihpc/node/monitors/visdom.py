"""Live plots of one sweep point in Visdom (rank 0 only), written so a plot server that is
down, slow or hung never costs training time and nothing plotted is lost.

Visdom's own client builds every message; it runs in offline mode, so it appends each call
to ``points/<i>/visdom.log`` and never touches the network. With ``post`` the monitor also
hands the message to a ``Sender`` thread (short timeout, back-off); without it (the default
under Slurm) the login node's follower streams the log into its server
(``mrihpc.login.live.follower``). ``mrihpc visdom replay`` rebuilds the windows from the logs.

One env per sweep (``<name>_<sweep-id>``); windows of point i are ``p<i>_<what>``:
loss (per logged step, appended in batches: appending costs more as a window grows),
lr (per logged step, so warm restarts show), val_<metric> (per validation, the model and
the zero-filled baseline), memory (host RSS and CUDA memory sampled over time, read from
memory.dat each epoch, when profiled), memory_peaks (their peaks per epoch),
images (input | prediction | target | error, each validation) and config (the point's
YAML). ``compare_<metric>`` holds one trace per point, each replaced whole every epoch
(a short list), so replaying is idempotent there too.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from visdom import Visdom

from mrihpc.paths import PointPaths, read_jsonl
from mrihpc.visdom_transport import Sender, Transport, read_log

STEP_META = {"kind", "epoch", "batch", "batches", "lr"}


class _LoggingVisdom(Visdom):
    """Visdom's client in offline mode (formats and logs each call) that also forwards it."""

    def __init__(self, env: str, log: str, forward):
        super().__init__(env=env, offline=True, log_to_filename=log, use_incoming_socket=False)
        self.forward = forward

    def _send(self, msg, endpoint="events", quiet=False, from_log=False, create=True):
        out = super()._send(msg, endpoint, quiet, from_log, create)
        if endpoint in ("events", "update"):
            self.forward(endpoint, msg)
        return out


def _first_stamp(path, fallback: float) -> float:
    """The time of a memory.dat's first sample (the x origin of the memory window)."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "MEM" and len(parts) == 3:
                return float(parts[2])
    return fallback


class VisdomMonitor:
    def __init__(
        self,
        paths: PointPaths,
        env: str,
        index: int,
        point_name: str,
        metric: str,
        config_text: str,
        url: str,
        timeout_s: float = 2.0,
        backoff_s: float = 30.0,
        flush_every: int = 5,
        post: bool = True,
    ):
        self.env, self.prefix, self.point_name, self.metric = env, f"p{index}_", point_name, metric
        # post: False leaves the calls in visdom.log for the login node's follower
        self.sender = Sender(Transport(url, timeout_s, backoff_s)) if post else None
        # windows made before (a resumed point): append to them instead of starting over
        self.created = {m.get("win") for e, m in read_log(paths.visdom_log) if e == "events"} - {
            None
        }
        self.vis = _LoggingVisdom(
            env, str(paths.visdom_log), self.sender.submit if post else lambda *call: None
        )
        # memory samples already plotted (a resumed point's memory.dat keeps its earlier ones)
        self.memory_file = paths.memory
        self.memory_read = (
            paths.memory.stat().st_size
            if self.prefix + "memory" in self.created and paths.memory.is_file()
            else 0
        )
        self.memory_t0: float | None = None
        self.history = [
            (r["epoch"], r[f"val_{metric}"])
            for r in read_jsonl(paths.metrics, dict)
            if r.get("kind") == "epoch" and f"val_{metric}" in r
        ]
        self.steps: list[dict] = []
        self.flush_every = flush_every
        self.vis.text(
            f"<b>{point_name}</b><pre>{config_text}</pre>",
            win=self.prefix + "config",
            opts={"title": f"{point_name}: config"},
        )

    # --- windows -------------------------------------------------------------------------
    def _lines(
        self, what: str, x: list[float], traces: dict[str, list[float]], title: str, xlabel: str
    ) -> None:
        """Create window ``what`` on first use, append afterwards; one trace per ``traces`` key."""
        win = self.prefix + what
        names = list(traces)
        Y = np.array([traces[n] for n in names], dtype=float).T  # (points, traces)
        X = np.repeat(np.array(x, dtype=float)[:, None], len(names), axis=1)
        if len(names) == 1:
            Y, X = Y[:, 0], X[:, 0]
        if win in self.created:
            self.vis.line(Y=Y, X=X, win=win, update="append")
        else:
            self.vis.line(
                Y=Y,
                X=X,
                win=win,
                opts={
                    "title": f"{self.point_name}: {title}",
                    "legend": names,
                    "xlabel": xlabel,
                    "showlegend": True,
                },
            )
            self.created.add(win)

    def _flush_steps(self) -> None:
        if not self.steps:
            return
        x = [r["step"] for r in self.steps]
        keys = [
            k
            for k in self.steps[0]
            if k not in STEP_META | {"step"} and isinstance(self.steps[0][k], float)
        ]
        self._lines(
            "loss",
            x,
            {k: [r.get(k, math.nan) for r in self.steps] for k in keys},
            "training loss",
            "step",
        )
        self._lines("lr", x, {"lr": [r["lr"] for r in self.steps]}, "learning rate", "step")
        self.steps = []

    def _epoch(self, record: dict) -> None:
        epoch = record["epoch"] + 1
        for key in sorted(k for k in record if k.startswith("val_") and k != "val_volumes"):
            traces = {"model": [record[key]]}
            baseline = "val_zf_" + key[len("val_") :]
            if baseline in record:
                traces["zero-filled"] = [record[baseline]]
            if not key.startswith("val_zf_"):
                self._lines(key, [epoch], traces, key[len("val_") :], "epoch")
        memory = {k: [record[k]] for k in sorted(record) if k.startswith("mem_")}
        if memory:
            self._lines("memory_peaks", [epoch], memory, "memory peaks per epoch (MiB)", "epoch")
            self._memory_samples()
        if f"val_{self.metric}" in record:
            self.history.append((epoch, record[f"val_{self.metric}"]))
            win = f"compare_{self.metric}"
            xs, ys = (
                np.array([h[0] for h in self.history], dtype=float),
                np.array([h[1] for h in self.history]),
            )
            if win not in self.created:
                # an append creates the window or adds this point's trace (a plain create would
                # wipe the other points' traces); the replace then always sets the whole trace,
                # so the last call for it is idempotent and a replay cannot double it
                self.vis.line(
                    Y=ys,
                    X=xs,
                    win=win,
                    name=self.point_name,
                    update="append",
                    opts={
                        "title": f"{self.env}: {self.metric}",
                        "showlegend": True,
                        "xlabel": "epoch",
                    },
                )
                self.created.add(win)
            self.vis.line(Y=ys, X=xs, win=win, name=self.point_name, update="replace")
        if self.sender is not None:
            self.sender.submit("save", {"data": [self.env]})  # envs persist on disk only when saved

    def _images(self, images: dict[str, torch.Tensor], epoch: int) -> None:
        """``images``: name -> (H, W) tensor; each scaled to [0, 1] on its own. Panels of the first
        image's size share the ``images`` window; an image of another size (a sample grid) gets a
        window of its own."""
        scaled = {}
        for name, img in images.items():
            img = img.detach().float().cpu()
            lo, hi = float(img.min()), float(img.max())
            scaled[name] = ((img - lo) / (hi - lo if hi > lo else 1.0))[None]
        size = next(iter(scaled.values())).shape
        together = [n for n, t in scaled.items() if t.shape == size]
        self.vis.images(
            torch.stack([scaled[n] for n in together]),
            nrow=len(together),
            padding=4,
            win=self.prefix + "images",
            opts={
                "title": f"{self.point_name}: {' | '.join(together)} (epoch {epoch + 1})",
                "caption": " | ".join(together),
            },
        )
        for name in [n for n in scaled if n not in together]:
            self.vis.image(
                scaled[name],
                win=f"{self.prefix}image_{name}",
                opts={"title": f"{self.point_name}: {name} (epoch {epoch + 1})", "caption": name},
            )

    # --- monitor interface ---------------------------------------------------------------
    def log(self, metrics: dict, step: int) -> None:
        kind = metrics.get("kind")
        if kind == "step":
            self.steps.append({"step": step, **metrics})
            if len(self.steps) >= self.flush_every:
                self._flush_steps()
        elif kind == "epoch":
            self._flush_steps()
            self._epoch(metrics)
        elif kind == "images":
            self._images(metrics["images"], metrics["epoch"])

    def _memory_samples(self) -> None:
        """Append memory.dat's new samples to the memory window: host RSS (and CUDA allocated) in
        MiB against seconds since the first sample."""
        try:
            with open(self.memory_file, "rb") as f:
                f.seek(self.memory_read)
                data = f.read()
        except FileNotFoundError:
            return
        data = data[: data.rfind(b"\n") + 1]  # complete lines only; the rest next epoch
        self.memory_read += len(data)
        host, cuda = {}, {}
        for line in data.decode().splitlines():
            parts = line.split()
            if parts and parts[0] == "MEM" and len(parts) == 3:
                host[float(parts[2])] = float(parts[1])
            elif parts and parts[0] == "CUDA" and len(parts) == 5:
                cuda[float(parts[4])] = float(parts[1])
        if not host:
            return
        stamps = sorted(host)
        self.memory_t0 = (
            self.memory_t0
            if self.memory_t0 is not None
            else _first_stamp(self.memory_file, stamps[0])
        )
        traces = {"host_rss_mib": [host[t] for t in stamps]}
        if cuda:
            traces["cuda_allocated_mib"] = [cuda.get(t, float("nan")) for t in stamps]
        self._lines(
            "memory",
            [t - self.memory_t0 for t in stamps],
            traces,
            "memory (MiB, sampled)",
            "seconds",
        )

    def stats(self) -> dict:
        """Calls sent, refused by the server, failed (timeout / no server), skipped in back-off,
        dropped."""
        if self.sender is None:
            return {"posted": False}
        t = self.sender.transport
        return {
            "sent": t.sent,
            "refused": t.refused,
            "failed": t.failed,
            "skipped": t.skipped,
            "dropped": self.sender.dropped,
            "last_error": t.last_error,
        }

    def close(self) -> None:
        try:
            self._flush_steps()
        finally:
            if self.sender is not None:
                self.sender.close()
        s = self.stats()
        if self.sender is not None and s["failed"] or s["refused"] or s["skipped"] or s["dropped"]:
            print(
                f"[mrihpc] visdom: {s['sent']} calls sent, {s['failed']} failed, {s['refused']} "
                f"refused, {s['skipped'] + s['dropped']} not sent (last error: {s['last_error']}); "
                "every call is in visdom.log: `mrihpc visdom replay RUN` rebuilds the plots",
                file=sys.stderr,
            )
