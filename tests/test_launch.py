"""Submission through submitit: the golden sbatch script, arrays, the pickled callable."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from conftest import REPO
from mrihpc.login.launch import max_array_size, sbatch_script, slurm_parameters
from mrihpc.login.checks import prepare
from mrihpc.node.entry import PointTask

GOLDEN = Path(__file__).parent / "golden" / "knee_unet.sbatch"


def render_knee_unet() -> str:
    spec, _, points, _ = prepare(str(REPO / "jobs" / "knee_unet.yaml"), check_paths=False)
    text = sbatch_script(spec, Path("/RUN/logs"), len(points))
    return text.replace(sys.executable, "PYTHON")


def test_golden_sbatch_script_from_shipped_spec():
    """Rendered by submitit's own SlurmExecutor (no cluster needed); refresh with
    `python -c 'from tests.test_launch import *; GOLDEN.write_text(render_knee_unet())'` after a
    deliberate change."""
    text = render_knee_unet()
    assert text == GOLDEN.read_text()
    for line in (
        "#SBATCH --array=0-3%4",
        "#SBATCH --partition=dgx",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --time=1440",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --output=/RUN/logs/%A_%a_0_log.out",
        "#SBATCH --mail-type=END,FAIL",
        "#SBATCH --requeue",
    ):
        assert line in text.splitlines(), line


def test_dry_run_prints_points_and_script(capsys):
    from mrihpc.login.cli import main

    assert (
        main(["submit", str(REPO / "jobs" / "knee_unet.yaml"), "--dry-run", "--runs", "/tmp/never"])
        == 0
    )
    out = capsys.readouterr().out
    assert "lr=3e-4,acc=8,cf=0.04" in out and "#SBATCH --array=0-3%4" in out
    assert not Path("/tmp/never").exists()  # dry-run queues and writes nothing


def test_overrides_reach_the_script():
    spec, _, points, _ = prepare(
        str(REPO / "jobs" / "knee_unet.yaml"),
        ["cluster.array_parallelism=2", "cluster.qos=high", "cluster.sbatch={reservation: mri}"],
        check_paths=False,
    )
    text = sbatch_script(spec, Path("/RUN/logs"), len(points))
    assert (
        "#SBATCH --array=0-3%2" in text
        and "#SBATCH --qos=high" in text
        and "#SBATCH --reservation=mri" in text
    )


def test_tasks_per_node_defaults_to_one_per_gpu():
    spec, *_ = prepare(
        str(REPO / "jobs" / "knee_unet.yaml"),
        ["cluster.gpus_per_node=4", "train.batch_size=8"],
        check_paths=False,
    )
    assert slurm_parameters(spec, Path("/RUN"))["ntasks_per_node"] == 4


def test_pickled_callable_is_small():
    assert (
        len(pickle.dumps(PointTask("/some/long/path/runs/knee-unet/20261121-000000-000", 1234)))
        < 10_000
    )


def test_max_array_size_from_spec():
    spec, *_ = prepare(
        str(REPO / "jobs" / "knee_unet.yaml"), ["cluster.max_array_size=2"], check_paths=False
    )
    assert max_array_size(spec.cluster) == 2
