"""Fault injection through benchmarks/faults.py at a small size: kill -9 (half of them during
checkpoint writes), a NaN loss, a truncated data file and a full disk (a tmpfs: needs root, as
CI and the set-up script run). Nothing may be lost."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_faults_lose_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "faults.py"), "--kills", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    k = r["kills"]
    assert k["kills"] == 2 and k["during_checkpoint_write"] >= 1, k
    assert (
        k["corrupt_checkpoints"],
        k["restarts_from_scratch"],
        k["resumed_elsewhere"],
        k["leftover_temp_files"],
    ) == (0, 0, 0, 0), k
    assert k["final_weights_identical"] is True
    assert r["nan"]["failed_with_reason_and_step"] and r["nan"]["other_point_done"], r["nan"]
    assert (
        r["corrupt"]["failed_naming_the_file"] and r["corrupt"]["refused_at_submit_naming_the_file"]
    ), r["corrupt"]
    assert r["bad_data"]["total"]["named the file"] >= 39, r["bad_data"]["total"]
    for workload, counts in r["bad_data"].items():  # every case in the first column
        assert [
            counts[c] for c in ("error not naming the file", "traceback", "silently accepted")
        ] == [0, 0, 0], (workload, counts)
    for verb, counts in r["damaged_runs"].items():
        assert counts["named the file"] >= 4 and [
            counts[c] for c in ("error not naming the file", "traceback", "silently accepted")
        ] == [0, 0, 0], (verb, counts)
    d = r["disk_full"]
    assert "skipped" not in d, d
    assert d["clear_error"] and d["torn_files"] == 0 and d["previous_checkpoint_intact"], d
    assert (
        d["run_on_full_disk_message"]
        and d["half_made_run_folders"] == 0
        and d["resumed_once_space_is_back"]
    ), d
