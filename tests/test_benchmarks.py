"""Every benchmark runs once at a tiny size, so none rots. The figures come from full runs
(benchmarks/run_all.sh, JSON under benchmarks/results/); nothing here asserts a time.
(benchmarks/faults.py and visdom_follower_lag.py run in test_faults.py and test_follower.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

TINY_RUNS = {
    "login_verbs": ["--repeats", "1"],
    "metrics_speed": ["--repeats", "1", "--shape", "3", "32", "32"],
    "knee_loader": [
        "--volumes",
        "2",
        "--slices",
        "3",
        "--workers",
        "0",
        "1",
        "--rss-volumes",
        "2",
        "3",
        "--step-steps",
        "1",
        "--step-size",
        "32",
    ],
    "train_step": [
        "--steps",
        "1",
        "--warmup",
        "1",
        "--batch",
        "2",
        "--size",
        "32",
        "--configs",
        "fp32",
        "channels_last",
    ],
    "ddp_scaling": ["--ranks", "2", "--steps", "2", "--warmup", "1", "--batch", "1"],
    "visdom_hung_server": ["--epochs", "1", "--repeats", "1"],
    "cine_loader_rss": ["--cases", "7", "9", "--frames", "7", "--size", "32"],
    "predict_throughput": [
        "--repeats",
        "1",
        "--batch",
        "4",
        "--knee",
        "4",
        "4",
        "32",
        "--cine",
        "10",
        "7",
        "32",
    ],
}


def _run(name: str, args: list[str], timeout: float = 600) -> dict:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", list(TINY_RUNS))
def test_benchmark_runs_at_a_tiny_size(name):
    result = _run(name, TINY_RUNS[name])
    assert result.get("benchmark", name) == name or name in (
        "cine_loader_rss",
        "visdom_hung_server",
    )
    if name == "metrics_speed":
        assert (
            result["max_abs_diff_cpu"] < 1e-4
        )  # equal to scikit-image; its speed is the full run's
    if name == "knee_loader":
        assert set(result["speed"]) == {"0", "1"} and set(result["rss_peak_mib"]) == {"2", "3"}
        assert all(
            w["transform_on_device"]["loader_alone_over_step"] > 0 for w in result["speed"].values()
        )
        assert set(result["speed"]["1"]["epoch_start_s"]) == {"persistent_workers", "re_forked"}
    if name == "predict_throughput":  # batched prediction writes what the per-sample loop wrote
        for workload in ("knee", "cine"):
            assert result[workload]["files"] >= 1 and result[workload]["samples"] >= 3
            assert result[workload]["max_abs_diff"] < 1e-5
        forward = result["knee"]["forward"]  # the per-sample loop against the device's matmul
        assert forward["gflop_per_slice"] > 0 and forward["per_sample_over_matmul"] > 0
        if result["device"].startswith("cpu"):  # the default pass: at most CPU_PASS_VALUES
            from mrihpc.node.trained import CPU_PASS_VALUES

            assert result["knee"]["default_batch"] == min(4, CPU_PASS_VALUES // (32 * 32))
            assert result["cine"]["default_batch"] == min(4, CPU_PASS_VALUES // (2 * 7 * 32 * 32))
    if name == "login_verbs":
        assert len(result["verbs"]) == 9


@pytest.mark.slurm
def test_submit_benchmark_runs_at_a_tiny_size(slurm_cluster):
    result = _run("submit_sweep", ["--points", "20", "--repeats", "1"])
    size = result["sizes"][0]
    assert (
        size["points"] == 20 and size["mrihpc_sbatch_calls"] == 1 == size["submitit_sbatch_calls"]
    )


@pytest.mark.slurm
def test_adaptive_sweep_benchmark_runs_at_a_tiny_size(slurm_cluster):
    """Both sweeps run on the test cluster; the adaptive one trains fewer epochs, and its rungs
    halve (its figures against the targets come from the full run, in benchmarks/results/)."""
    result = _run(
        "adaptive_sweep",
        ["--tiny", "--epochs", "2", "--lrs", "1e-3", "5e-3", "--channels", "4", "8"],
    )
    full, adaptive = result["full_grid"], result["adaptive"]
    assert full["epochs"] == 8 and adaptive["epochs"] == 4 * 1 + 2 * 1
    assert adaptive["rungs"] == [{"epochs": 1, "points": 4}, {"epochs": 2, "points": 2}]
    assert adaptive["promotion_jobs"] == 1 and full["cpu_hours"] > 0


def test_compile_and_channels_last_train_through_the_trainer(tmp_path):
    """train.compile and train.channels_last are applied by the Trainer: a run with both trains,
    and its checkpoint holds the plain network's keys (no compile wrapper prefix)."""
    from conftest import TINY, merge
    from mrihpc.login.cli import main
    from mrihpc.node import checkpoint

    spec = merge(
        TINY,
        train={
            **TINY["train"],
            "epochs": 1,
            "steps_per_epoch": 2,
            "compile": True,
            "channels_last": True,
        },
        sweep={},
    )
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--point", "0", "--runs", str(tmp_path / "runs")]) == 0
    last = checkpoint.load(next((tmp_path / "runs").rglob("last.pt")))
    assert not any(k.startswith("_orig_mod") for k in last["nets"]["model"])


def test_mfu_divides_by_the_peak_of_the_exact_part():
    """An H100 PCIe card peaks at 756 dense bf16 TFLOPs, the SXM part at 989: the more specific
    name must win, or the PCIe card's MFU is understated by a quarter."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from train_step import peak_bf16
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert peak_bf16("NVIDIA H100 PCIe") == 756e12 and peak_bf16("NVIDIA H100 NVL") == 835e12
    assert (
        peak_bf16("NVIDIA H100 80GB HBM3") == 989e12
        and peak_bf16("NVIDIA A100-SXM4-80GB") == 312e12
    )
    assert peak_bf16("Tesla V100-SXM2-32GB") is None  # no bf16 tensor cores: no MFU reported
