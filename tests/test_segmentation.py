"""Cardiac segmentation (seed 004) end to end: the PNG layout and its checks, the seed's U-Net,
MONAI's losses and metrics on hand-made examples, the demo spec trained with the local
executor, results per class, and predicted PNG masks. Real PNG files, real training."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from skimage.io import imread, imsave

from conftest import REPO
from mrihpc.login.cli import main
from mrihpc.metrics import segmentation_scores
from mrihpc.models.unet import build_unet
from mrihpc.paths import read_jsonl
from mrihpc.specfile import SpecError, load_spec, validate_dict
from mrihpc.workloads.segmentation.data import PngSegmentation, scan
from mrihpc.workloads.segmentation.spec import SegmentationModel
from mrihpc.workloads.segmentation.synth import generate

CLASSES = ["background", "rv", "myo", "lv"]
SEG = {
    "name": "seg",
    "task": "segmentation",
    "data": {"synthetic": {"train": 8, "val": 4, "test": 3, "size": 64, "seed": 3}},
    "model": {"preset": "acdc_small", "channels": 8, "depth": 2},
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local", "time": "10:00"},
}


def test_seed_unet_has_the_seeds_parameter_count_and_emits_logits():
    model = build_unet(SegmentationModel(preset="acdc"))
    assert sum(p.numel() for p in model.parameters()) == 69_822_340
    small = build_unet(SegmentationModel())
    out = small(torch.rand(2, 1, 96, 96))
    assert out.shape == (2, 4, 96, 96) and out.min() < 0  # logits, no sigmoid


@pytest.fixture(scope="module")
def acdc(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("acdc"), train=6, val=3, test=3, size=64, seed=1)


def test_synthetic_twin_writes_the_real_layout(acdc):
    images = sorted(p.name for p in (acdc / "train" / "image").glob("*.png"))
    masks = sorted(p.name for p in (acdc / "train" / "mask").glob("*.png"))
    assert masks == sorted(f"{n[:-4]}_mask.png" for n in images) and len(images) == 6
    assert (
        not (acdc / "test" / "mask").exists()
        and len(list((acdc / "test" / "image").glob("*.png"))) == 3
    )
    mask = imread(acdc / "train" / "mask" / "cmr1_mask.png")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1, 2, 3}
    assert imread(acdc / "train" / "image" / "cmr1.png").dtype == np.uint8


def test_data_synth_acdc_cli_writes_the_layout(tmp_path, capsys):
    assert (
        main(
            [
                "data",
                "synth",
                "acdc",
                str(tmp_path / "d"),
                "--train",
                "2",
                "--val",
                "1",
                "--test",
                "1",
                "--size",
                "48",
            ]
        )
        == 0
    )
    assert sorted(
        p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.png")
    ) == [
        "test/image/cmr4.png",
        "train/image/cmr1.png",
        "train/image/cmr2.png",
        "train/mask/cmr1_mask.png",
        "train/mask/cmr2_mask.png",
        "val/image/cmr3.png",
        "val/mask/cmr3_mask.png",
    ]


def _copy(acdc, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(acdc, root)
    return root


def _validate(root, write_spec, capsys, **data) -> tuple[int, str]:
    spec = {**SEG, "data": {"root": str(root), **data}}
    code = main(["validate", "--check-paths", str(write_spec(spec))])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "damage,expected",
    [
        (
            lambda r: (r / "train/mask/cmr2_mask.png").unlink(),
            "train/mask/cmr2_mask.png: no mask for image",
        ),
        (
            lambda r: shutil.copy(r / "train/mask/cmr1_mask.png", r / "train/mask/cmr99_mask.png"),
            "cmr99_mask.png: mask without an image",
        ),
        (
            lambda r: imsave(
                r / "val/mask/cmr7_mask.png", np.full((64, 64), 7, np.uint8), check_contrast=False
            ),
            "cmr7_mask.png: mask values [7] outside the 4 classes; allowed: 0..3 or [0, "
            "85, 170, 255]",
        ),
        (
            lambda r: [
                imsave(r / f"train/{p}.png", np.eye(32, dtype=np.uint8), check_contrast=False)
                for p in ("image/cmr3", "mask/cmr3_mask")
            ],
            "cmr3.png: size (32, 32) differs from",
        ),
        (
            lambda r: [p.unlink() for p in (r / "val/image").glob("*.png")],
            "val/image: no *.png images",
        ),
        (
            lambda r: shutil.rmtree(r / "val/mask"),
            "val/mask: missing; the val split is used for validation",
        ),
    ],
    ids=[
        "unpaired image",
        "unpaired mask",
        "mask value",
        "size",
        "empty folder",
        "val without masks",
    ],
)
def test_bad_data_folders_are_refused_before_anything_is_queued(
    acdc, tmp_path, write_spec, capsys, damage, expected
):
    root = _copy(acdc, tmp_path)
    damage(root)
    code, err = _validate(root, write_spec, capsys)
    assert code == 2 and expected in err and "data.root" in err and "Traceback" not in err, err


def test_masks_stored_as_0_85_170_255_are_mapped_and_said_so(acdc, tmp_path, write_spec, capsys):
    root = _copy(acdc, tmp_path)
    for path in (root / "train" / "mask").glob("*.png"):
        imsave(path, (imread(path) * 85).astype(np.uint8), check_contrast=False)
    code, _ = _validate(root, write_spec, capsys)
    assert code == 0
    data = validate_dict({**SEG, "data": {"root": str(root)}}, "t").data
    ds = PngSegmentation(scan(root, "train", True), data, train=False)
    assert "mapped to 0..3" in ds.notes[0]
    assert set(np.unique(ds[0]["label"])) == {0, 1, 2, 3}
    with pytest.raises(Exception, match="outside the 4 classes; allowed: 0..3"):
        PngSegmentation(
            scan(root, "train", True), data.model_copy(update={"mask_values": "index"}), train=False
        )


def test_paired_augmentation_moves_image_and_mask_together(acdc):
    data = validate_dict(
        {
            **SEG,
            "data": {"root": str(acdc), "augment": {"rotate_deg": 0, "flip_lr": 1, "flip_ud": 0}},
        },
        "t",
    ).data
    plain = PngSegmentation(scan(acdc, "train", True), data, train=False)[0]
    flipped = PngSegmentation(scan(acdc, "train", True), data, train=True)[0]
    assert np.array_equal(flipped["label"], plain["label"][:, ::-1])
    assert np.array_equal(flipped["input"], plain["input"][:, :, ::-1])
    data = data.model_copy(update={"augment": data.augment.model_copy(update={"rotate_deg": 30})})
    ds = PngSegmentation(scan(acdc, "train", True), data, train=True, seed=5)
    a, b = ds[1], ds[1]
    assert np.array_equal(a["label"], b["label"])  # seeded by (seed, epoch, index)
    assert set(np.unique(a["label"])) <= {0, 1, 2, 3}  # nearest-neighbour: no invented labels
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["label"], a["label"])


def test_dice_and_hd95_on_a_hand_made_example():
    label = torch.zeros(1, 10, 10, dtype=torch.long)
    pred = torch.zeros(1, 10, 10, dtype=torch.long)
    label[0, 2:4, 2:4] = 1  # RV: 4 pixels
    pred[0, 2:4, 2:5] = 1  # predicted 6 pixels, 4 of them right: Dice 2*4/(4+6) = 0.8
    label[0, 7, 7] = 3  # LV present in the label only: Dice 0, HD95 the diagonal
    # MYO absent from both: Dice 1, HD95 0 (agreeing that it is not there)
    s = segmentation_scores(pred, label, CLASSES)[0]
    assert s["dice_rv"] == pytest.approx(0.8) and s["dice_myo"] == 1.0 and s["dice_lv"] == 0.0
    # surface distances: the 2 extra pixels in column 4 are 1 from the label, all others 0
    assert s["hd95_rv"] == pytest.approx(1.0) and s["hd95_myo"] == 0.0
    assert s["hd95_lv"] == pytest.approx(math.hypot(10, 10))
    assert s["dice"] == pytest.approx((0.8 + 1 + 0) / 3) and s["hd95"] == pytest.approx(
        (1 + 0 + math.hypot(10, 10)) / 3
    )


def test_losses_read_logits_and_dice_has_the_2x_form():
    from mrihpc.losses import bce_onehot, cross_entropy, focal, soft_dice

    label = torch.randint(0, 4, (2, 8, 8))
    logits = torch.randn(2, 4, 8, 8)
    out, batch = {"logits": logits}, {"label": label}
    assert cross_entropy(out, batch) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, label))
    )
    probs = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(label, 4).permute(0, 3, 1, 2).float()
    inter, denom = (probs * onehot).sum((2, 3)), (probs + onehot).sum((2, 3))
    assert float(soft_dice(out, batch)) == pytest.approx(
        float((1 - (2 * inter + 1e-5) / (denom + 1e-5)).mean()), abs=1e-5
    )
    sure = {"logits": onehot * 40 - 20}  # confident and right: every loss near 0
    assert (
        float(soft_dice(sure, batch)) < 1e-3
        and float(focal(sure, batch)) < 1e-6
        and float(bce_onehot(sure, batch)) < 1e-6
    )
    p = torch.sigmoid(logits)
    pt = torch.where(onehot > 0, p, 1 - p)
    alpha = torch.where(onehot > 0, 0.25, 0.75)
    by_hand = (-alpha * (1 - pt) ** 2 * torch.log(pt)).mean()
    assert float(focal(out, batch)) == pytest.approx(float(by_hand), rel=1e-4)


def test_foreign_keys_are_rejected_for_each_task(write_spec):
    with pytest.raises(SpecError) as e:
        load_spec(write_spec({**SEG, "data": {**SEG["data"], "mask": {"kind": "random"}}}))
    assert (
        "data.mask: unknown key for task segmentation; allowed: augment, classes, "
        "mask_values, max_images, normalize, root, stage, synthetic" in str(e.value)
    )
    knee = yaml_load(REPO / "jobs" / "quickstart.yaml")
    with pytest.raises(SpecError) as e:
        load_spec(
            write_spec({**knee, "data": {**knee["data"], "classes": ["a", "b"]}, "sweep": {}})
        )
    assert "data.classes: unknown key for task reconstruction; allowed:" in str(
        e.value
    ) and "mask" in str(e.value)
    problems = "\n".join(
        _problems(
            write_spec,
            {
                **SEG,
                "loss": {"l1": 1.0},
                "train": {**SEG["train"], "metric": "ssim"},
                "model": {"preset": "acdc_small", "out_channels": 3},
                "optim": {"G": {"lr": 1e-3}},
            },
        )
    )
    assert (
        "loss.l1: not a loss of task segmentation; allowed: ce, dice, focal, dice_ce, bce"
        in problems
    )
    assert (
        "train.metric: 'ssim' is not a validation metric of task segmentation; allowed: "
        "dice, hd95, loss" in problems
    )
    assert "optim: G not an optimiser of task segmentation" in problems
    assert _problems(write_spec, {k: v for k, v in SEG.items() if k != "task"})[0].endswith(
        "task: required key is missing; allowed: reconstruction, segmentation, cine, "
        "sinogram, knee_gan, synthesis"
    )
    only_model = _problems(
        write_spec, {**SEG, "model": {"preset": "acdc_small", "out_channels": 3}}
    )
    assert len(only_model) == 1
    assert only_model[0].endswith(
        "model.out_channels: 3, but data.classes names 4 classes; set model.out_channels: 4"
    )


def _problems(write_spec, spec) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(spec))
    return e.value.problems


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_overrides_sweeps_and_per_optimiser_settings_reach_segmentation_keys(write_spec):
    spec, _ = load_spec(
        write_spec({**SEG, "data": {**SEG["data"], "augment": {}}}),
        ["data.augment.rotate_deg=12", "data.normalize=instance", "optim.lr=3e-4"],
    )
    assert (
        spec.data.augment.rotate_deg == 12
        and spec.data.normalize == "instance"
        and spec.optim_for("main").lr == 3e-4
    )
    keyed, _ = load_spec(
        write_spec({**SEG, "optim": {"main": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}}),
        ["optim.main.lr=0.2"],
    )
    assert keyed.optim_for("main").name == "sgd" and keyed.optim_for("main").lr == 0.2
    from mrihpc.login.checks import prepare

    _, _, points, _ = prepare(
        str(
            write_spec(
                {
                    **SEG,
                    "sweep": {
                        "grid": {
                            "data.normalize": ["unit", "none"],
                            "loss": [{"ce": 1.0}, {"dice": 1.0, "ce": 0.5}],
                        }
                    },
                }
            )
        )
    )
    assert [p.name for p, _ in points] == [
        "normalize=unit,loss=ce",
        "normalize=unit,loss=dice+ce:0.5",
        "normalize=none,loss=ce",
        "normalize=none,loss=dice+ce:0.5",
    ]
    assert points[3][1].loss == {"dice": 1.0, "ce": 0.5} and points[3][1].data.normalize == "none"


def test_demo_spec_trains_beats_the_baseline_and_writes_png_masks(tmp_path, capsys):
    """The shipped CPU demo (fewer epochs), submitted with the local executor as a user would."""
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "submit",
                str(REPO / "jobs" / "acdc_demo.yaml"),
                "--runs",
                str(runs),
                "-o",
                "train.epochs=6",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    run_dir = next((runs / "acdc-demo").iterdir())
    for point in range(2):
        epochs = [
            r
            for r in read_jsonl(run_dir / "points" / str(point) / "metrics.jsonl")
            if r.get("kind") == "epoch"
        ]
        final = epochs[-1]
        assert final["val_dice"] >= final["val_base_dice"] + 0.3, final
        assert final["val_hd95"] < final["val_base_hd95"], final
        assert (
            final["val_seed_dice"] > final["val_base_dice"] and final["val_volumes"] == 12
        )  # batches not counted
    assert main(["results", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[0].split()
    assert header[:5] == ["point", "name", "state", "epochs", "best_dice"]
    assert {"val_dice_rv", "val_dice_myo", "val_dice_lv", "val_hd95_lv"} <= set(header)
    assert header.index("val_dice_lv") < header.index("val_base_dice")
    best = [float(line.split()[4]) for line in table[1:3]]
    assert best == sorted(best, reverse=True), table  # best first
    assert "val_dice" in out  # submit ends with the same table

    for split, expected in (("val", 12), ("test", 6)):
        assert main(["predict", str(run_dir), "--point", "0", "--split", split]) == 0
        written = capsys.readouterr().out.split()
        images = sorted(p.stem for p in (_data_root(run_dir) / split / "image").glob("*.png"))
        assert len(images) == expected
        assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
            f"{s}_mask.png" for s in images
        )  # one each, none lost
        for path in written:
            mask = imread(path)
            assert (
                mask.dtype == np.uint8
                and mask.shape == (96, 96)
                and set(np.unique(mask)) <= {0, 1, 2, 3}
            )
        panels = list((run_dir / "points" / "0" / "predictions" / split / "panels").glob("*.png"))
        assert len(panels) == 4 and imread(panels[0]).shape == (
            96,
            96 * (3 if split == "val" else 2),
            3,
        )
    # the val predictions agree with the labels as well as validation said
    stem = sorted(p.stem for p in (_data_root(run_dir) / "val" / "image").glob("*.png"))[0]
    pred = imread(run_dir / "points" / "0" / "predictions" / "val" / "mask" / f"{stem}_mask.png")
    label = imread(_data_root(run_dir) / "val" / "mask" / f"{stem}_mask.png")
    assert (pred == label).mean() > 0.9


def _data_root(run_dir):
    from mrihpc.specfile import load_point_spec
    from mrihpc.paths import RunPaths
    from mrihpc.workloads.segmentation.data import root_of

    return root_of(load_point_spec(RunPaths(run_dir).point(0)).data)


class TwoNets(__import__("mrihpc.spec", fromlist=["Section"]).Section):
    """A model section naming two networks, as an adversarial workload declares it."""

    G: SegmentationModel = SegmentationModel()
    D: SegmentationModel = SegmentationModel()


def test_named_networks_and_per_optimiser_settings_are_expressible(monkeypatch, write_spec):
    """A workload with networks G and D and optimisers G and D (registered for this test only):
    lr_G != lr_D and betas (0.5, 0.999) in YAML, each optimiser with its own schedule."""
    import dataclasses

    from mrihpc import workloads
    from mrihpc.workloads.segmentation.spec import WORKLOAD

    gan = dataclasses.replace(
        WORKLOAD,
        name="gan-test",
        title="GanTest",
        model=TwoNets,
        optimizers=("G", "D"),
        check_spec=None,
    )
    monkeypatch.setitem(workloads.WORKLOADS, "gan-test", f"{__name__}:GAN_TEST")
    monkeypatch.setitem(globals(), "GAN_TEST", gan)
    monkeypatch.setattr(workloads, "_SPEC_CLASSES", {})
    text = """
name: gan
task: gan-test
data: {synthetic: {train: 4, val: 2}}
model: {G: {channels: 8}, D: {preset: acdc_small, depth: 2}}
optim:
  G: {name: adam, lr: 2.0e-4, betas: [0.5, 0.999]}
  D: {name: adam, lr: 1.0e-4, betas: [0.5, 0.999]}
schedule: {G: {warmup_epochs: 1}, all: {restart_epochs: 5}}
"""
    spec, _ = load_spec(write_spec(text), ["optim.D.lr=5e-5"])
    assert spec.model.G.channels == 8 and spec.model.D.depth == 2
    assert (spec.optim_for("G").lr, spec.optim_for("D").lr) == (2e-4, 5e-5)
    assert spec.optim_for("G").betas == (0.5, 0.999) == spec.optim_for("D").betas
    assert spec.schedule_for("G").warmup_epochs == 1 and spec.schedule_for("D").restart_epochs == 5
    dumped = spec.model_dump(mode="json")
    assert (
        set(dumped["optim"]) == {"G", "D"}
        and validate_dict(dumped, "again").optim_for("D").lr == 5e-5
    )
    problems = _problems(
        write_spec, text.replace("  D: {name: adam, lr: 1.0e-4, betas: [0.5, 0.999]}\n", "")
    )
    assert any("optim: no settings for D; add them or an 'all' entry" in p for p in problems)
