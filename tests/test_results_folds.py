"""After the sweep: points that differ only by fold (or, with --by-seed, by seed) are one
configuration in `results`, with n, mean and sample std of every score, ranked by the mean, the
per-fold rows on request, and the same numbers in --csv."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
import yaml

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths


def _submit(write_spec, tmp_path, sweep: dict) -> RunPaths:
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}, sweep=sweep))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    return RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))


def _csv(capsys, *args) -> list[dict]:
    capsys.readouterr()
    assert main(["results", *args, "--csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """Two learning rates x three folds: six points, two configurations."""
    tmp = tmp_path_factory.mktemp("folds")
    spec = tmp / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            merge(
                TINY,
                train={**TINY["train"], "epochs": 1},
                sweep={"grid": {"optim.lr": [2e-3, 1e-4]}, "folds": 3},
            )
        )
    )
    assert main(["submit", str(spec), "--runs", str(tmp / "runs")]) == 0
    return RunPaths(next((tmp / "runs" / "tiny").iterdir()))


def test_folds_are_one_configuration_each_with_mean_std_and_n(folded, capsys):
    points = _csv(capsys, str(folded.root), "--each")
    assert len(points) == 6 and {p["name"].split(",")[-1] for p in points} == {
        "fold=0",
        "fold=1",
        "fold=2",
    }
    grouped = _csv(capsys, str(folded.root))
    assert [g["n"] for g in grouped] == ["3", "3"] and len(grouped) == 2
    for g in grouped:
        mine = [float(p["best_ssim"]) for p in points if p["point"] in g["points"].split()]
        assert (
            len(mine) == 3
            and g["config"]
            == next(p["name"] for p in points if p["point"] == g["points"].split()[0]).rsplit(
                ",", 1
            )[0]
        )
        assert float(g["best_ssim_mean"]) == pytest.approx(statistics.fmean(mine), rel=1e-9)
        assert float(g["best_ssim_std"]) == pytest.approx(statistics.stdev(mine), rel=1e-9)
    assert float(grouped[0]["best_ssim_mean"]) >= float(
        grouped[1]["best_ssim_mean"]
    )  # ranked by the mean
    assert main(["results", str(folded.root)]) == 0
    out = capsys.readouterr().out
    assert (
        "2 configuration(s), ranked by the mean of best_ssim over 3 folds" in out
        and "results --each" in out
    )
    assert out.splitlines()[0].split()[:5] == [
        "config",
        "n",
        "points",
        "best_ssim_mean",
        "best_ssim_std",
    ]


def test_by_seed_groups_points_that_differ_only_by_seed(write_spec, tmp_path, capsys):
    run = _submit(write_spec, tmp_path, {"grid": {"optim.lr": [2e-3, 1e-4], "train.seed": [1, 2]}})
    assert len(_csv(capsys, str(run.root))) == 4  # no folds: one row per point unless asked
    grouped = _csv(capsys, str(run.root), "--by-seed")
    assert [g["n"] for g in grouped] == ["2", "2"] and {g["config"] for g in grouped} == {
        "lr=2e-3",
        "lr=1e-4",
    }


def test_predict_each_fold_predicts_every_fold_of_the_best_configuration(folded, capsys):
    """`predict --each-fold`: the configuration first in `results` (best mean over its folds)
    predicts with each of its fold points, in each point's folder; the other one does not."""
    rows = _csv(capsys, str(folded.root))
    best = [int(p) for p in rows[0]["points"].split()]
    assert len(best) == 3
    capsys.readouterr()
    assert main(["predict", str(folded.root), "--each-fold", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert f"(mean over its folds): points {' '.join(map(str, sorted(best)))}" in out
    for point in range(6):
        files = sorted((folded.point(point).predictions / "val").glob("*.h5"))
        assert bool(files) == (point in best), point
        assert all(str(f) in out for f in files)


def test_knee_gan_demo_with_three_folds_and_two_optimisers_is_two_configurations_of_three(
    tmp_path, capsys
):
    """The shipped knee GAN demo (seed 000 compares optimisers by the fold average), made tiny,
    with ``folds: 3`` and the generator's optimiser swept over Adam and RMSprop: `results` shows
    two configurations, n = 3 each, with the mean and sample std of their folds, ranked by the
    mean."""
    from conftest import REPO

    spec = yaml.safe_load((REPO / "jobs" / "knee_gan_demo.yaml").read_text())
    spec["data"] |= {
        "synthetic": {
            "volumes": 6,
            "slices": 3,
            "shape": [48, 40],
            "recon_shape": [32, 32],
            "seed": 0,
        },
        "skip_slices": 0,
    }
    spec["model"]["G"] |= {"channels": 4, "depth": 2}
    spec["model"]["D"]["widths"] = [4, 8]
    spec["train"] |= {"epochs": 1, "steps_per_epoch": 2, "threads": 1}
    spec["sweep"] = {"grid": {"optim.G.name": ["adam", "rmsprop"]}, "folds": 3}
    path = tmp_path / "knee_gan_demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["submit", str(path), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "knee-gan-demo").iterdir()))
    points = _csv(capsys, str(run.root), "--each")
    assert len(points) == 6 and all(p["best_ssim"] for p in points), points
    grouped = _csv(capsys, str(run.root))
    assert len(grouped) == 2 and [g["n"] for g in grouped] == ["3", "3"]
    assert {g["config"] for g in grouped} == {"G=adam", "G=rmsprop"}
    means = [float(g["best_ssim_mean"]) for g in grouped]
    assert means == sorted(means, reverse=True)
    for g in grouped:
        mine = [float(p["best_ssim"]) for p in points if p["point"] in g["points"].split()]
        assert float(g["best_ssim_mean"]) == pytest.approx(statistics.fmean(mine), rel=1e-9)
        assert float(g["best_ssim_std"]) == pytest.approx(statistics.stdev(mine), rel=1e-9)
