"""How Slurm's states read: PREEMPTED and REQUEUED are not done; failures are picked up."""

from mrihpc.login.accounting import FAILED_STATES, _expand, normalise


def test_state_classification():
    assert normalise("PREEMPTED") == "requeued" and normalise("REQUEUED") == "requeued"
    assert normalise("CANCELLED by 0") == "cancelled"
    assert normalise("OUT_OF_MEMORY") == "out_of_memory" and normalise("NODE_FAIL") == "node_fail"
    assert normalise("TIMEOUT") == "timeout" and normalise("COMPLETED") == "done"
    for state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
        assert normalise(state) in FAILED_STATES
    for state in ("PREEMPTED", "REQUEUED", "PENDING", "RUNNING", "COMPLETED"):
        assert normalise(state) not in FAILED_STATES


def test_pending_array_rows_expand():
    assert _expand("12_[0-3%2]") == ["12_0", "12_1", "12_2", "12_3"]
    assert _expand("12_[1,4]") == ["12_1", "12_4"]
    assert _expand("12_7") == ["12_7"]


def test_gpu_utilisation_comes_from_the_steps_tres_usage_where_a_site_gathers_it():
    """sacct as a site with NVML's AcctGatherGpu writes it (this machine has no GPU, so the rows
    are written out here): the step rows' gres/gpuutil is the job's gpu_util; a requeue's second
    incarnation replaces the first's, and its hours add up; the test cluster's rows have none."""
    from mrihpc.login.accounting import parse_sacct

    out = "\n".join(
        [
            "501_0|REQUEUED|600|0:0|dgx1|billing=8,cpu=8,gres/gpu=2,mem=64G,node=1|0|",
            "501_0.batch|CANCELLED|600|0:15|dgx1|cpu=8,gres/gpu=2,mem=64G,node=1|0|cpu=00:01:00,mem=1G",
            "501_0.0|CANCELLED|598|0:15|dgx1|cpu=8,gres/gpu=2,mem=64G,node=1|0|"
            "cpu=00:50:00,gres/gpumem=30000M,gres/gpuutil=71,mem=20G",
            "501_0|COMPLETED|1200|0:0|dgx2|billing=8,cpu=8,gres/gpu=2,mem=64G,node=1|7200000|",
            "501_0.batch|COMPLETED|1200|0:0|dgx2|cpu=8,gres/gpu=2,mem=64G,node=1|0|cpu=00:02:00,mem=1G",
            "501_0.0|COMPLETED|1199|0:0|dgx2|cpu=8,gres/gpu=2,mem=64G,node=1|7200000|"
            "cpu=01:50:00,gres/gpumem=31000M,gres/gpuutil=88.5,mem=21G",
            "501_1|COMPLETED|60|0:0|node1|billing=1,cpu=1,mem=2000M,node=1|0|",
            "501_1.0|COMPLETED|59|0:0|node1|cpu=1,mem=2000M,node=1|0|cpu=00:00:50,mem=400M",
        ]
    )
    rows = parse_sacct(out)
    gpu = rows["501_0"]
    assert gpu["gpu_util"] == 88.5 and gpu["incarnations"] == 2 and gpu["state"] == "done"
    assert gpu["gpu_hours"] == 2 * (600 + 1200) / 3600 and gpu["energy_kwh"] == 2.0
    assert "gpu_util" not in rows["501_1"] and rows["501_1"]["cpu_hours"] == 60 / 3600
