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
