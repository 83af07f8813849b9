"""Shared fixtures: a session-wide data cache and tiny specs built from real components."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: a knee spec small enough to train in seconds on one CPU core
TINY = {
    "name": "tiny",
    "task": "reconstruction",
    "data": {
        "format": "fastmri",
        "synthetic": {
            "volumes": 6,
            "slices": 10,
            "shape": [96, 80],
            "recon_shape": [64, 64],
            "seed": 1,
        },
        "skip_slices": 3,
        "mask": {"kind": "random", "accelerations": [4], "center_fractions": [0.08]},
    },
    "model": {"name": "unet", "channels": 8, "depth": 2, "residual": True},
    "loss": {"l1": 1.0},
    "optim": {"name": "adam", "lr": 2e-3},
    "schedule": {"warmup_epochs": 1, "restart_epochs": 2, "restart_mult": 2},
    "train": {"epochs": 2, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local", "time": "10:00", "array_parallelism": 2},
}


@contextlib.contextmanager
def scoped_env(name: str, value: str):
    """Set an environment variable for a session-long fixture and restore it afterwards."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@pytest.fixture(scope="session", autouse=True)
def inductor_cache():
    """torch.compile's cache, one per CPU-kernel setting: inductor's precompiled header does not
    key on ATEN_CPU_CAPABILITY, so a cache filled natively broke the compile test under
    ATEN_CPU_CAPABILITY=default (``at::vec`` undeclared), and passed with a fresh one."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        yield
        return
    import getpass

    key = "-".join(
        os.environ.get(v, "native") for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    )
    with scoped_env(
        "TORCHINDUCTOR_CACHE_DIR",
        f"{tempfile.gettempdir()}/torchinductor_{getpass.getuser()}/{key}",
    ):
        yield


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """One synthetic-data cache for the whole session (generated once, reused by every test)."""
    path = tmp_path_factory.mktemp("cache")
    with scoped_env("MRIHPC_CACHE", str(path)):
        yield path


def stop_after(steps: int, count):
    """StopSignals on which SIGTERM is noted once ``count()`` reaches ``steps`` training steps,
    as its handler would note it (not installed: no real signal is sent to the test process)."""
    import signal

    from mrihpc.node.preemption import StopSignals

    class StopAfter(StopSignals):
        def requested(self, world, nonfinite=0):
            if count() == steps:
                self.signum = signal.SIGTERM
            return super().requested(world, nonfinite)

    return StopAfter()


def merge(base: dict, **sections) -> dict:
    out = copy.deepcopy(base)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(dict or text, name) -> path of a YAML file in the test's folder."""

    def write(content, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(
            content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        )
        return path

    return write


CLUSTER_DIR = Path(os.environ.get("MRIHPC_TEST_CLUSTER", "/tmp/mrihpc-test-cluster"))


def _cluster_up(conf: Path) -> bool:
    import subprocess

    if not conf.is_file():
        return False
    env = {**os.environ, "SLURM_CONF": str(conf)}
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%t", "-n", "node1,node2"], capture_output=True, text=True, env=env
    )
    return out.returncode == 0 and set(out.stdout.split()) == {"idle"}


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real two-node test cluster of slurm/cluster.sh: reused when up, else started (and
    stopped at the end). A cluster that cannot start fails the tests; it never skips them."""
    import subprocess

    conf = CLUSTER_DIR / "etc" / "slurm.conf"
    started = False
    if not _cluster_up(conf):
        out = subprocess.run(
            ["bash", str(REPO / "slurm" / "cluster.sh"), "start", str(CLUSTER_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            pytest.fail(f"the test Slurm cluster did not start:\n{out.stdout}\n{out.stderr}")
        started = True
    with scoped_env("SLURM_CONF", str(conf)):
        yield CLUSTER_DIR
    if started:
        subprocess.run(
            ["bash", str(REPO / "slurm" / "cluster.sh"), "stop", str(CLUSTER_DIR)], timeout=120
        )


DOCKER_IMAGE = os.environ.get("MRIHPC_TEST_IMAGE", "mrihpc-test/stock-torch:2.13.0")


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    """A real dockerd of tools/docker-engine.sh (its own socket and data root, the host's network
    untouched) and the stock-like test image (Debian, Python, CPU torch; no mrihpc and none of its
    other dependencies), built once and kept in $MRIHPC_TEST_CACHE, outside the repository.
    Yields the daemon's DOCKER_HOST. An engine that cannot start fails the tests; never skips."""
    import subprocess

    engine = REPO / "tools" / "docker-engine.sh"
    folder = Path(
        tempfile.mkdtemp(prefix="mrihpc-dockerd-")
    )  # short: a unix socket path has 108 bytes
    out = subprocess.run(
        ["bash", str(engine), "start", str(folder)], capture_output=True, text=True, timeout=120
    )
    if out.returncode:
        pytest.fail(f"dockerd did not start:\n{out.stdout}\n{out.stderr}")
    host = f"unix://{folder}/docker.sock"
    try:
        with scoped_env("DOCKER_HOST", host):
            built = subprocess.run(
                ["bash", str(engine), "image"], capture_output=True, text=True, timeout=900
            )
            if built.returncode:
                pytest.fail(f"the test image did not build:\n{built.stdout}\n{built.stderr}")
            yield host
    finally:
        subprocess.run(["bash", str(engine), "stop", str(folder)], timeout=120)


def wait_status(run, point: int, predicate, timeout: float = 300) -> dict:
    """Poll point ``point``'s own status.json until ``predicate`` holds; on timeout fail with the
    status and the tail of every task's stderr."""
    import time

    from mrihpc.paths import read_json

    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_json(run.point(point).status, {}) or {}
        if predicate(status):
            return status
        time.sleep(0.3)
    logs = "".join(
        p.read_text(errors="replace")[-2000:] for p in sorted((run.root / "logs").glob("*.err"))
    )
    pytest.fail(f"point {point}: {read_json(run.point(point).status)}\n{logs}")
