"""Login-node verbs answer without importing torch or MONAI (reading data to check it may use
h5py or scikit-image): a shared login node must not pay seconds of imports for `validate`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, TINY, merge

PROBE = (
    "import sys; from mrihpc.login.cli import main; code = main(sys.argv[1:]); "
    "heavy = sorted(m for m in ('torch', 'monai') if m in sys.modules); "
    "print('HEAVY', heavy); sys.exit(code)"
)


def _verb(*args: str, ok=(0,)) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode in ok, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished local run to ask about (training imports torch, in its own processes)."""
    import yaml

    folder = tmp_path_factory.mktemp("login")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(merge(TINY, train={**TINY["train"], "epochs": 1})))
    subprocess.run(
        [sys.executable, "-m", "mrihpc", "submit", str(spec), "--runs", str(folder / "runs")],
        check=True,
        capture_output=True,
    )
    return next((folder / "runs" / "tiny").iterdir())


def test_visdom_verbs_leave_torch_out():
    """visdom's own package imports torch: the server's assets are found without importing it."""
    assert _verb("visdom", "status", "--port", "1", ok=(0, 1)) == "HEAVY []"


def test_validate_and_dry_run_leave_torch_out():
    assert _verb("validate", *map(str, sorted((REPO / "jobs").glob("*.yaml")))) == "HEAVY []"
    assert _verb("submit", str(REPO / "jobs" / "acdc_unet.yaml"), "--dry-run") == "HEAVY []"


@pytest.mark.parametrize(
    "verb",
    [["status"], ["results"], ["logs", "0"], ["cancel"], ["tunnel"], ["resubmit", "--failed"]],
    ids=lambda v: v[0],
)
def test_reading_a_run_builds_no_spec_models(run_dir, verb):
    """status, results, logs, cancel and tunnel read the manifest, config.yaml and metrics as plain
    JSON / YAML: no torch, no pydantic (building the spec models costs 0.13 s on two cores), no
    submitit; resubmit imports them only when a point is to be submitted (none is here)."""
    probe = PROBE.replace("('torch', 'monai')", "('torch', 'monai', 'pydantic', 'submitit')")
    out = subprocess.run(
        [sys.executable, "-c", probe, verb[0], str(run_dir), *verb[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in ((0, 1) if verb[0] == "cancel" else (0,)), (
        out.stderr
    )  # nothing left to cancel: 1
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_results_of_a_run_made_before_the_manifest_named_its_metric(run_dir, tmp_path):
    """An older run's manifest has no task, metric or directions, and its point may not have
    started: results derive them from spec.yaml and the point's overrides, to the same table."""
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    assert manifest["task"] == "reconstruction" and manifest["metric"] == "ssim"
    assert manifest["metric_directions"]["nmse"] == "min"
    for key in ("task", "metric", "metric_directions"):
        del manifest[key]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "points" / "0" / "config.yaml").unlink()

    def table(run) -> str:
        return subprocess.run(
            [sys.executable, "-m", "mrihpc", "results", str(run), "--sort", "val_nmse"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert table(old) == table(run_dir) and "best_ssim" in table(old)


@pytest.mark.slurm
def test_a_real_submission_leaves_torch_out(slurm_cluster, run_dir, tmp_path):
    """With the synthetic data cached (run_dir made it), submitting to Slurm imports no torch:
    the data module imports it only to generate."""
    import json

    import yaml

    spec = tmp_path / "held.yaml"
    spec.write_text(
        yaml.safe_dump(
            merge(TINY, cluster={"executor": "slurm", "time": "10:00", "sbatch": {"hold": True}})
        )
    )
    assert _verb("submit", str(spec), "--runs", str(tmp_path / "runs")) == "HEAVY []"
    manifest = json.loads(
        next((tmp_path / "runs" / "tiny").iterdir()).joinpath("manifest.json").read_text()
    )
    subprocess.run(["scancel", manifest["submissions"][0]["array_id"]], check=True)


def _imports(path) -> set[str]:
    """Every mrihpc module a file imports, at any depth of its code (lazy imports included)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mrihpc"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mrihpc")}
    return found


def test_imports_flow_one_way():
    """node/ never imports login/; the shared modules (spec, paths, data, models, losses, metrics)
    import neither side, so each side can be read, and changed, without the other."""
    package = REPO / "mrihpc"
    shared = [
        p
        for p in package.rglob("*.py")
        if p.relative_to(package).parts[0] not in ("login", "node", "workloads")
        and p.name != "__main__.py"
    ]
    assert len(shared) > 15 and (package / "spec.py") in shared
    for path in package.joinpath("node").rglob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("mrihpc.login")}, path
    for path in shared:
        assert not {m for m in _imports(path) if m.startswith(("mrihpc.login", "mrihpc.node"))}, (
            path
        )


def test_no_import_cycles_lazy_imports_included():
    """No module of mrihpc reaches itself through its imports, those inside functions counted
    (a lazy import hides a cycle from the interpreter, not from a reader)."""
    package = REPO / "mrihpc"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def edges(
        path,
    ) -> set[str]:  # "from mrihpc.x import y" is an edge to mrihpc.x.y when that is a module
        return {m if m in modules else m.rsplit(".", 1)[0] for m in _imports(path)} & set(modules)

    graph = {name: edges(path) - {name} for name, path in modules.items()}
    assert len(graph) > 60 and graph["mrihpc.sweep"]
    cycles, done = [], set()

    def visit(name, trail):  # depth-first: a module met again on the current trail closes a cycle
        if name in trail:
            cycles.append(trail[trail.index(name) :] + [name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "kind,args",
    [
        (
            "knee",
            ["--volumes", "3", "--slices", "2", "--shape", "32", "24", "--recon-shape", "16", "16"],
        ),
        ("acdc", ["--train", "1", "--val", "1", "--test", "1", "--size", "32"]),
        ("cine", ["--cases", "3", "--frames", "7", "--size", "32"]),
        (
            "sinogram",
            [
                "--train",
                "1",
                "--val",
                "1",
                "--test",
                "1",
                "--slices",
                "2",
                "--angles",
                "8",
                "--size",
                "8",
            ],
        ),
        ("ixi", ["--subjects", "2", "--incomplete", "1", "--size", "32"]),
    ],
)
def test_data_synth_offers_each_workloads_twin_as_the_workload_declares_it(
    kind, args, tmp_path, capsys
):
    """Each workload declares its synthetic twin (kind, options, writer); the verb names none."""
    from mrihpc.login.cli import main

    assert main(["data", "synth", kind, str(tmp_path / "d"), *args]) == 0
    assert capsys.readouterr().out.startswith("wrote ") and any(
        p.is_file() for p in (tmp_path / "d").rglob("*")
    )
    verb = (REPO / "mrihpc" / "login" / "verbs" / "data.py").read_text()
    assert kind not in verb.lower().replace("kind", "")
