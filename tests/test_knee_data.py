"""Knee data: masks, transforms, the fastMRI reader, header, synthetic files, bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mrihpc.data import DataError
from mrihpc.workloads.knee.kspace.fastmri import (
    index_volumes,
    list_files,
    parse_header,
    scan_volume,
    split_folds,
)
from mrihpc.workloads.knee.kspace.masks import EquispacedMask, RandomMask, seed_from_name
from mrihpc.workloads.knee.kspace.slices import KSpaceSlices
from mrihpc.workloads.knee.kspace.synth import HEADER, generate
from mrihpc.workloads.knee.kspace.transforms import center_crop, fft2c, ifft2c


@pytest.mark.parametrize("cls", [RandomMask, EquispacedMask])
@pytest.mark.parametrize("acc,fraction", [(4, 0.08), (8, 0.04)])
def test_mask_centre_and_rate(cls, acc, fraction):
    width, rates = 368, []
    for seed in range(200):
        mask, drawn = cls([acc], [fraction])(width, np.random.default_rng(seed))
        num_low = round(width * fraction)
        start = (width - num_low + 1) // 2
        assert drawn == acc
        assert mask[start : start + num_low].all()  # fully sampled centre, fastMRI's offset
        rates.append(mask.float().mean().item())
    assert abs(np.mean(rates) - 1 / acc) < 0.1 / acc  # within 10% of 1/acc


def test_equispaced_is_regular_outside_the_centre():
    mask, _ = EquispacedMask([4], [0.08])(368, np.random.default_rng(0))
    outer = np.flatnonzero(mask.numpy())
    gaps = np.diff(outer)
    adjusted = (4 * (29 - 368)) / (29 * 4 - 368)  # 5.38: leaves room for the 29 centre lines
    assert set(gaps[gaps > 1]) <= {int(adjusted), int(adjusted) + 1}


def test_several_pairs_are_drawn_per_sample():
    func = RandomMask([4, 8], [0.08, 0.04])
    drawn = {func(368, np.random.default_rng(s))[1] for s in range(50)}
    assert drawn == {4, 8}


def test_validation_masks_fixed_per_file_training_masks_fresh(tmp_path):
    root = generate(tmp_path / "d", 4, slices=6, shape=(64, 48), recon_shape=(32, 32))
    volumes = index_volumes(list_files(root / "val"), "fastmri")
    func = RandomMask([4], [0.08])
    val = KSpaceSlices(volumes, func, None, "zero_filled_max", 2, train=False, seed=0)
    first = [val[i]["input"] for i in range(len(val))]
    val.set_epoch(5)
    assert all(torch.equal(a, val[i]["input"]) for i, a in enumerate(first))
    train = KSpaceSlices(volumes, func, None, "zero_filled_max", 2, train=True, seed=0)
    a = train[0]["input"]
    assert torch.equal(a, train[0]["input"])  # same (seed, epoch, index): same mask
    train.set_epoch(1)
    assert not torch.equal(a, train[0]["input"])
    assert (
        seed_from_name("file1000.h5")
        == seed_from_name("file1000.h5")
        != seed_from_name("file1001.h5")
    )


def test_fft_roundtrip_and_orthonormality():
    x = torch.randn(3, 20, 18, dtype=torch.complex64)
    k = fft2c(x)
    assert torch.allclose(ifft2c(k), x, atol=1e-5)
    assert torch.allclose(k.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-4)
    assert center_crop(torch.zeros(2, 640, 368), (320, 320)).shape == (2, 320, 320)


def test_header_padding_formula():
    xml = HEADER.format(ex=640, ey=368, rx=320, ry=320, maximum=349, center=166)
    header = parse_header(xml, "f.h5")
    assert header["encoded"][:2] == [640, 368] and header["recon"][:2] == [320, 320]
    left = 368 // 2 - 166
    assert header["padding"] == (left, left + 349 + 1)


def test_synthetic_files_in_the_real_layouts(tmp_path):
    root = generate(
        tmp_path / "fm", 4, slices=8, shape=(96, 80), recon_shape=(64, 64), layout="fastmri"
    )
    f = h5py.File(list_files(root / "train")[0])
    assert f["kspace"].dtype == np.complex64 and f["kspace"].shape == (8, 96, 80)
    assert f["reconstruction_esc"].dtype == np.float32 and f["reconstruction_esc"].shape == (
        8,
        64,
        64,
    )
    assert {"max", "norm", "acquisition", "patient_id"} <= set(f.attrs)
    assert b"http://www.ismrm.org/ISMRMRD" in f["ismrmrd_header"][()]
    # the image is structured (not noise): the middle slice has far more energy than the first
    image = f["reconstruction_esc"]
    assert image[4].mean() > 10 * image[0].mean()
    nc = generate(
        tmp_path / "nc", 4, slices=8, shape=(96, 80), recon_shape=(64, 64), layout="nc2019"
    )
    train = h5py.File(list_files(nc / "train")[0])
    test = h5py.File(list_files(nc / "test")[0])
    assert list(train.keys()) == ["kspace"]
    assert sorted(test.keys()) == ["kspace_4af", "kspace_8af"]
    sampled = (np.abs(test["kspace_4af"][4]).sum(axis=0) > 0).mean()
    assert 0.15 < sampled < 0.4  # about one column in four


def test_generation_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", 2, slices=4, shape=(48, 40), recon_shape=(32, 32), seed=3)
    b = generate(tmp_path / "b", 2, slices=4, shape=(48, 40), recon_shape=(32, 32), seed=3)
    fa, fb = list_files(a / "train")[0], list_files(b / "train")[0]
    assert np.array_equal(h5py.File(fa)["kspace"][()], h5py.File(fb)["kspace"][()])


def test_folds_split_by_volume(tmp_path):
    files = [tmp_path / f"f{i}.h5" for i in range(7)]
    seen = []
    for k in range(3):
        train, val = split_folds(files, 3, k)
        assert not set(train) & set(val) and len(train) + len(val) == 7
        seen += val
    assert sorted(seen) == sorted(files)


# --- files that cannot be used: each error names the file and the problem -----------------


def _bad(tmp_path, name, build):
    path = tmp_path / name
    build(path)
    return path


def test_not_hdf5(tmp_path):
    path = _bad(tmp_path, "notes.h5", lambda p: p.write_text("not an hdf5 file"))
    with pytest.raises(DataError, match=f"{path}: not a readable HDF5 file"):
        scan_volume(path, "fastmri")


def test_missing_kspace(tmp_path):
    path = _bad(
        tmp_path,
        "empty.h5",
        lambda p: h5py.File(p, "w").create_dataset("image", data=np.zeros((2, 4, 4))),
    )
    with pytest.raises(DataError, match=f"{path}: no k-space dataset.*found image"):
        scan_volume(path, "fastmri")


def test_real_valued_kspace(tmp_path):
    path = _bad(
        tmp_path,
        "real.h5",
        lambda p: h5py.File(p, "w").create_dataset("kspace", data=np.zeros((2, 4, 4), np.float32)),
    )
    with pytest.raises(DataError, match=f"{path}: kspace must be a complex"):
        scan_volume(path, "nc2019")


def test_fastmri_layout_without_target_suggests_nc2019(tmp_path):
    path = _bad(
        tmp_path,
        "k.h5",
        lambda p: h5py.File(p, "w").create_dataset(
            "kspace", data=np.zeros((2, 4, 4), np.complex64)
        ),
    )
    with pytest.raises(DataError, match="missing 'reconstruction_esc'.*nc2019"):
        scan_volume(path, "fastmri")
    assert scan_volume(path, "nc2019").target_key is None


def test_target_with_wrong_shape(tmp_path):
    def build(p):
        with h5py.File(p, "w") as f:
            f.create_dataset("kspace", data=np.zeros((3, 8, 8), np.complex64))
            f.create_dataset("reconstruction_esc", data=np.zeros((2, 4, 4), np.float32))

    path = _bad(tmp_path, "mislabelled.h5", build)
    with pytest.raises(
        DataError, match=f"{path}: reconstruction_esc must be float32 \\(3, h, w\\)"
    ):
        scan_volume(path, "fastmri")


def test_index_cache_is_reused_and_refreshed(tmp_path):
    root = generate(tmp_path / "d", 3, slices=4, shape=(48, 40), recon_shape=(32, 32))
    cache = tmp_path / "index.json"
    files = list_files(root / "train")
    first = index_volumes(files, "fastmri", cache)
    assert cache.is_file() and index_volumes(files, "fastmri", cache) == first
    files[0].write_bytes(b"corrupted")  # size and mtime change: the file is scanned again
    with pytest.raises(DataError, match=str(files[0])):
        index_volumes(files, "fastmri", cache)


@pytest.mark.parametrize(
    "shape,crop",
    [
        ((640, 368), (320, 320)),
        ((641, 367), (320, 321)),
        ((96, 80), (64, 64)),
        ((40, 30), (40, 30)),
        ((33, 20), (1, 1)),
    ],
)
def test_zero_filled_from_the_sampled_columns_equals_the_full_transform(shape, crop):
    import torch

    from mrihpc.workloads.knee.kspace.transforms import apply_mask, zero_filled, zero_filled_columns

    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(*shape, dtype=torch.complex64, generator=g)
    mask = torch.rand(shape[1], generator=g) < 0.3
    full = zero_filled(apply_mask(kspace, mask), crop)
    assert torch.allclose(
        zero_filled_columns(kspace, mask, crop), full, atol=1e-5 * float(full.max())
    )


def _two_widths(tmp_path, recon=((32, 32), (32, 32))) -> list:
    """Two fastMRI-layout volumes whose k-space widths differ (as fastMRI's 368 / 372), in one
    folder."""
    for i, (width, rec) in enumerate(zip((40, 44), recon)):
        generate(tmp_path / f"w{i}", 2, 4, (64, width), rec, "fastmri", i)
    files = sorted(tmp_path.glob("w*/train/*.h5"))
    return [scan_volume(f, "fastmri") for f in files]


@pytest.mark.parametrize("normalize", ["zero_filled_max", "instance"])
@pytest.mark.parametrize("train", [True, False])
def test_the_device_transform_equals_the_host_path_across_kspace_widths(tmp_path, normalize, train):
    """data.transform_on: device: workers hand out raw k-space and masks, one batch mixes two
    k-space widths, and finish_batch gives what the per-slice host path gives."""
    from mrihpc.workloads.knee.kspace.slices import collate_raw, finish_batch

    volumes = _two_widths(tmp_path)
    assert len({v.kspace_shape for v in volumes}) == 2
    args = (volumes, RandomMask([4, 8], [0.08, 0.04]), None, normalize, 0, train, 7)
    host, raw = KSpaceSlices(*args), KSpaceSlices(*args, raw=True)
    host.set_epoch(3), raw.set_epoch(3)
    picks = [
        0,
        len(host) - 1,
        1,
        len(host) - 2,
    ]  # first and last volume alternate: two widths in one batch
    batch = collate_raw([raw[i] for i in picks])
    assert sorted(batch["width"]) == [40, 44]
    # only the sampled columns travel: fewer than a whole k-space (at 4x and 8x)
    assert all(k.shape[-1] < w for k, w in zip(batch["kspace"], batch["width"]))
    done = finish_batch(batch, normalize)
    expected = [host[i] for i in picks]
    for key in ("input", "target", "mean", "std"):
        want = torch.stack([torch.as_tensor(e[key], dtype=torch.float32) for e in expected])
        assert done[key].shape == want.shape, key
        assert torch.allclose(done[key], want, rtol=1e-4, atol=1e-5 * float(want.abs().max())), key
    assert done["fname"] == [e["fname"] for e in expected]
    assert done["acceleration"] == [e["acceleration"] for e in expected]


def test_the_device_transform_refuses_a_batch_of_two_image_sizes(tmp_path):
    from mrihpc.workloads.knee.kspace.slices import collate_raw

    volumes = _two_widths(tmp_path, recon=((32, 32), (32, 40)))
    ds = KSpaceSlices(volumes, RandomMask([4], [0.08]), None, "instance", 0, True, 0, raw=True)
    with pytest.raises(DataError, match="set data.crop"):
        collate_raw([ds[0], ds[len(ds) - 1]])
    cropped = KSpaceSlices(
        volumes, RandomMask([4], [0.08]), (32, 32), "instance", 0, True, 0, raw=True
    )
    assert collate_raw([cropped[0], cropped[len(cropped) - 1]])["target"].shape == (2, 32, 32)
