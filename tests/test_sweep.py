"""Sweeps: grid x zip x folds counts, names, seeds, stability."""

from __future__ import annotations

from conftest import TINY, merge
from mrihpc.specfile import validate_dict
from mrihpc.sweep import expand, expand_and_validate, format_value, point_seed

SWEEP = {
    "grid": {"optim.lr": [1e-3, 3e-4], "train.batch_size": [2, 4]},
    "zip": {"data.mask.accelerations": [[4], [8]], "data.mask.center_fractions": [[0.08], [0.04]]},
    "folds": 3,
}


def _expand(sweep):
    raw = merge(TINY, sweep=sweep)
    return expand_and_validate(validate_dict(raw, "test"), raw, "test")


def test_grid_zip_folds_count_and_names():
    points = _expand(SWEEP)
    assert len(points) == 2 * 2 * 2 * 3
    names = [p.name for p, _ in points]
    assert names[0] == "lr=1e-3,bs=2,acc=4,cf=0.08,fold=0"
    assert names[-1] == "lr=3e-4,bs=4,acc=8,cf=0.04,fold=2"
    assert len(set(names)) == len(names)
    assert [p.index for p, _ in points] == list(range(24))


def test_points_carry_their_overrides_into_the_concrete_spec():
    for point, spec in _expand(SWEEP):
        assert spec.optim_for("main").lr == point.overrides["optim.lr"]
        assert spec.data.mask.accelerations == point.overrides["data.mask.accelerations"]
        assert (spec.data.folds, spec.data.fold) == (3, point.overrides["data.fold"])
        assert spec.train.seed == point.seed
        assert spec.sweep.grid == {}  # a concrete point has no sweep of its own


def test_seeds_are_distinct_and_derived_from_spec_seed_and_index():
    points = _expand(SWEEP)
    seeds = [p.seed for p, _ in points]
    assert len(set(seeds)) == len(seeds)
    assert seeds[5] == point_seed(TINY.get("train", {}).get("seed", 0), 5)
    other = merge(TINY, sweep=SWEEP, train={**TINY["train"], "seed": 1})
    assert [p.seed for p in expand(validate_dict(other, "test"))] != seeds


def test_same_spec_same_points_every_time():
    first = [(p.to_json(), s.model_dump()) for p, s in _expand(SWEEP)]
    second = [(p.to_json(), s.model_dump()) for p, s in _expand(SWEEP)]
    assert first == second


def test_explicit_points_combine_with_grid():
    points = _expand(
        {
            "grid": {"optim.lr": [1e-3, 2e-3]},
            "points": [{"optim.name": "sgd", "optim.momentum": 0.9}, {"optim.name": "adamw"}],
        }
    )
    assert len(points) == 4
    assert (
        points[0][1].optim_for("main").name == "sgd"
        and points[0][1].optim_for("main").momentum == 0.9
    )
    assert (
        points[3][1].optim_for("main").name == "adamw" and points[3][1].optim_for("main").lr == 2e-3
    )


def test_no_sweep_is_one_point_named_after_the_spec():
    points = _expand({})
    assert len(points) == 1 and points[0][0].name == "tiny"


def test_value_formatting():
    assert [format_value(v) for v in (3e-4, 1e-3, 0.08, 8, [4, 8], 1.0)] == [
        "3e-4",
        "1e-3",
        "0.08",
        "8",
        "4+8",
        "1",
    ]


def test_points_validated_section_by_section_equal_whole_validation():
    """expand_and_validate re-validates only the sections a point's overrides touch; for every
    shipped sweep each point's spec equals validating the point's whole spec."""
    from conftest import REPO
    from mrihpc.specfile import load_spec, validate_dict
    from mrihpc.sweep import point_config

    for path in sorted((REPO / "jobs").glob("*.yaml")):
        spec, raw = load_spec(path)
        fast = expand_and_validate(spec, raw, str(path))
        whole = [validate_dict(point_config(raw, p), str(path)) for p in expand(spec, str(path))]
        assert [s.model_dump() for _, s in fast] == [s.model_dump() for s in whole], path


def test_point_seeds_are_numpys_seed_sequence_without_numpy():
    import random

    import numpy as np

    from mrihpc.seeding import seed_sequence_word

    rng = random.Random(0)
    for _ in range(5000):
        entropy = [rng.getrandbits(rng.choice([1, 16, 32, 40])), rng.randrange(100_000)]
        assert seed_sequence_word(entropy) == int(
            np.random.SeedSequence(entropy).generate_state(1)[0]
        )
    assert point_seed(0, 0) == int(np.random.SeedSequence([0, 0]).generate_state(1)[0] & 0x7FFFFFFF)
