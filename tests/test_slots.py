"""BatchSlots: fixed-shape batches leave DataLoader workers through shared memory allocated once.
Real worker processes (fork), real knee files."""

from __future__ import annotations

import pytest
import torch

from mrihpc.data import DataError
from mrihpc.workloads.knee.kspace.fastmri import index_volumes, list_files
from mrihpc.workloads.knee.kspace.masks import RandomMask
from mrihpc.workloads.knee.kspace.slices import KSpaceSlices
from mrihpc.workloads.knee.kspace.synth import generate
from mrihpc.node.distributed import World
from mrihpc.node.loading import EpochIndexed, ShuffledShard, VolumeShard, rank_loader
from mrihpc.node.slots import SLOT, BatchSlots


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = generate(
        tmp_path_factory.mktemp("knee") / "d", 3, slices=7, shape=(48, 40), recon_shape=(24, 24)
    )
    return index_volumes(list_files(root / "train"), "fastmri")


def _slices(volumes, crop=None, raw=False) -> KSpaceSlices:
    return KSpaceSlices(
        volumes, RandomMask([4], [0.08]), crop, "instance", 0, train=True, seed=3, raw=raw
    )


def _same(a, b) -> bool:
    """Equal batch values: tensors, lists of tensors (a raw batch's k-space groups), plain
    values."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, list) and a and torch.is_tensor(a[0]):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("raw", [False, True], ids=["host", "raw"])
def test_slotted_batches_equal_the_in_process_ones_over_epochs_and_early_stops(volumes, raw):
    """Two persistent workers through slots (3 epochs, the middle one left after 2 batches with
    batches still in flight, as train.steps_per_epoch does) yield every batch of a loader without
    workers: the same tensors, per-slice values and order. Every batch is kept to the end, so a
    slot written again while a batch still pointed into it would show. Raw samples
    (data.transform_on: device) slot their target; their sampled columns travel as before."""
    data, world = _slices(volumes, raw=raw), World()
    runs = {}
    for workers in (0, 2):
        sampler = ShuffledShard(len(data), 7, world)
        loader = rank_loader(data, sampler, 4, True, workers, False, 7, keyed=EpochIndexed(data))
        assert (loader.slots is not None) == (workers > 0)
        runs[workers] = []
        for epoch, steps in enumerate((len(loader), 2, len(loader))):
            sampler.set_epoch(epoch)
            runs[workers].append([b for _, b in zip(range(steps), loader)])
    for plain, slotted in zip(runs[0], runs[2]):
        assert len(plain) == len(slotted) > 0
        for a, b in zip(plain, slotted):
            assert SLOT not in b and set(a) == set(b) and all(_same(a[k], b[k]) for k in a), a[
                "fname"
            ]


def test_validation_batches_by_volume_keep_their_partial_last_batch(volumes):
    """Whole volumes of 7 slices in batches of 4: the slot's first rows make the short last
    batch."""
    data = KSpaceSlices(volumes, RandomMask([4], [0.08]), None, "instance", 0, train=False, seed=3)
    shard = VolumeShard(data.volumes_index(), World())
    plain = list(rank_loader(data, shard, 4, False, 0, False, 0))
    slotted = list(rank_loader(data, shard, 4, False, 2, False, 0))
    assert [len(b["fname"]) for b in slotted] == [len(b["fname"]) for b in plain] and len(
        slotted[-1]["fname"]
    ) == len(data) % 4 > 0
    assert all(
        torch.equal(a["input"], b["input"]) and b["input"].shape[0] == len(b["fname"])
        for a, b in zip(plain, slotted)
    )


def test_a_worker_sends_only_the_slot_number_and_the_per_slice_values(volumes):
    data = _slices(volumes)
    slots = BatchSlots.for_loader(data, 3, workers=2, collate=data.collate)
    assert slots.count == 2 * 2 + 2
    batch = slots.collate([data[i] | {SLOT: 4} for i in range(3)])
    assert not any(
        torch.is_tensor(v) for v in batch.values()
    )  # nothing left for a shared-memory file of its own
    assert batch[SLOT] == (4, 3) and len(batch["mean"]) == 3
    taken = slots.take(dict(batch))
    assert torch.equal(taken["input"], torch.stack([data[i]["input"] for i in range(3)]))
    assert (
        taken["input"].data_ptr() != slots.blocks[4]["input"].data_ptr()
    )  # a copy the slot's next batch cannot touch


def test_no_slots_where_shapes_vary_or_nothing_leaves_the_process(tmp_path, volumes):
    data = _slices(volumes)
    assert BatchSlots.for_loader(data, 2, workers=0) is None
    raw = BatchSlots.for_loader(_slices(volumes, raw=True), 2, workers=2)
    assert raw.shapes == {
        "target": ((24, 24), torch.float32)
    }  # the sampled columns vary in number: not slotted
    other = generate(tmp_path / "o", 3, slices=3, shape=(48, 40), recon_shape=(20, 20))
    mixed = _slices(volumes + index_volumes(list_files(other / "train"), "fastmri"))
    assert mixed.slot_shapes() is None
    assert _slices(volumes, crop=(16, 16)).slot_shapes()["input"] == ((1, 16, 16), torch.float32)


def test_a_sample_of_another_shape_is_named(volumes):
    data = _slices(volumes)
    slots = BatchSlots({"input": ((1, 20, 20), torch.float32)}, 2, 2, collate=data.collate)
    with pytest.raises(
        DataError,
        match=r"sample \S+\.h5 slice \d+: input has shape \(1, 24, 24\), the dataset declared "
        r"\(1, 20, 20\)",
    ):
        slots.collate([data[0] | {SLOT: 0}])


def test_a_process_exits_with_a_loaders_workers_still_alive(tmp_path):
    """Persistent workers ignore SIGTERM, so multiprocessing's exit hook (terminate, then join)
    waited on them forever when nobody closed the loader and nothing collected it before exit:
    the test session itself hung after its summary that way. Here the loader sits in a reference
    cycle that no collection reaches before exit; the process must still end, with its output."""
    import subprocess
    import sys

    script = tmp_path / "leave_open.py"
    script.write_text(
        "import gc, torch\n"
        "from torch.utils.data import SequentialSampler, TensorDataset\n"
        "from mrihpc.node.loading import rank_loader\n"
        "gc.disable()\n"
        "data = TensorDataset(torch.arange(8.0))\n"
        "loader = rank_loader(data, SequentialSampler(data), 2, False, 2, False, 0)\n"
        "first = next(iter(loader))\n"
        "cycle = {'loader': loader}\n"
        "cycle['self'] = cycle\n"
        "print('first batch', first[0].tolist(), flush=True)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the process did not exit with its loader's workers alive: {hung}")
    assert done.returncode == 0, done.stderr
    assert "first batch [0.0, 1.0]" in done.stdout
