"""`mrihpc report RUN`: one self-contained HTML page, opened offline in headless Chromium: its
tables equal `results --csv`, its images (curves, each point's latest samples) render, the spec,
overrides, failures and provenance are on it. A screenshot goes to the test artefacts."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths

ARTIFACTS = Path(os.environ.get("MRIHPC_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _csv(capsys, *args) -> list[list[str]]:
    capsys.readouterr()
    assert main(["results", *args, "--csv"]) == 0
    return list(csv.reader(io.StringIO(capsys.readouterr().out)))


def _rows(page, table: str) -> list[list[str]]:
    return page.evaluate(
        f"[...document.querySelectorAll('#{table} tr')].map(r => [...r.cells].map(c => "
        "c.textContent))"
    )


def test_the_report_opens_offline_and_matches_results(tmp_path, capsys):
    from chromium_page import ChromiumPage

    runs = tmp_path / "runs"  # two synthesis points (samples/epoch-*.png each), one of them failing
    assert (
        main(
            [
                "submit",
                str(REPO / "jobs" / "ixi_pix2pix_demo.yaml"),
                "--runs",
                str(runs),
                "-o",
                "train.epochs=2",
                "-o",
                "model.G.widths=[8,16,16,16,16]",
                "-o",
                "model.D.widths=[8,16,16,16]",
                "-o",
                "sweep.points=[{model.mode: generator, loss: {l1: 1.0}}, {optim.lr: 1.0e+30}]",
            ]
        )
        == 0
    )
    run = RunPaths(next((runs / "ixi-pix2pix-demo").iterdir()))
    capsys.readouterr()
    assert main(["report", str(run.root)]) == 0
    page_file = run.root / "report.html"
    assert f"report: {page_file}" in capsys.readouterr().out
    text = page_file.read_text()
    assert (
        "http://" not in text and "https://" not in text and "<script" not in text
    )  # nothing fetched, nothing run
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: tools/setup.sh --test installs it"
    with ChromiumPage(chromium, size="1400,2400") as page:
        page.open(page_file.as_uri())
        images = page.wait_for(
            lambda: page.evaluate(
                "[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])"
            ),
            lambda v: bool(v) and all(ok for _, ok in v),
        )
        # the curves and the good point's latest sample grid (the failed point diverged before its
        # first)
        assert images == [["curves of every point", True], ["epoch-001.png", True]], images
        assert _rows(page, "points") == _csv(capsys, str(run.root))
        assert "NonFiniteLoss" in page.evaluate("document.getElementById('status').textContent")
        assert page.evaluate("document.querySelectorAll('#points tr.failed').length") == 1
        assert "ixi-pix2pix-demo" in page.evaluate("document.getElementById('spec').textContent")
        assert "optim.lr=1e+30" in page.evaluate(
            "document.body.textContent"
        )  # what the point overrides
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "report.png").write_bytes(page.screenshot())


def test_a_sweep_over_folds_gets_its_configuration_table(tmp_path, write_spec, capsys):
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}, sweep={"folds": 2}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    out = tmp_path / "page.html"
    assert main(["report", str(run.root), "-o", str(out)]) == 0
    text = out.read_text()
    grouped = _csv(capsys, str(run.root))
    assert (
        "<table id=configurations>" in text
        and grouped[0][:3] == ["config", "n", "points"]
        and grouped[1][1] == "2"
    )
    for cell in grouped[1]:
        assert f"<td>{cell}</td>" in text


def test_the_report_is_never_written_through_a_link(tmp_path, write_spec, capsys):
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    target = tmp_path / "elsewhere.html"
    (run.root / "report.html").symlink_to(target)
    capsys.readouterr()
    assert main(["report", str(run.root)]) != 0
    assert "link" in capsys.readouterr().err and not target.exists()


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
