"""Spec files that would hang, exhaust memory or silently mean something else are refused at
``validate``, naming the file and the line or key, before anything is queued."""

from __future__ import annotations

import pytest
import yaml

from conftest import TINY
from mrihpc.login.cli import main
from mrihpc.specfile import MAX_SPEC_BYTES, MAX_SPEC_VALUES, expanded_size


def _err(capsys, path) -> str:
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _bomb(levels: int, indent: str) -> str:
    """A billion laughs: level i is a list of nine aliases of level i-1 (9^levels values)."""
    lines = [f"{indent}l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [
        f"{indent}l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def base(write_spec):
    return write_spec(TINY, "base.yaml")


@pytest.mark.parametrize(
    "section",
    [
        "cluster:\n  sbatch:\n",
        "sweep:\n  grid:\n",
        "sweep:\n  points:\n    - optim.lr: 0.001\n      bomb:\n",
    ],
    ids=["cluster.sbatch", "sweep.grid", "sweep.points"],
)
def test_an_alias_bomb_anywhere_in_the_tree_is_refused(section, base, write_spec, capsys):
    indent = " " * (len(section.splitlines()[-1]) - len(section.splitlines()[-1].lstrip()) + 2)
    spec = write_spec(f"extends: base.yaml\n{section}{_bomb(9, indent)}", "bomb.yaml")
    err = _err(capsys, spec)
    assert f"bomb.yaml: expands to more than {MAX_SPEC_VALUES:,} values" in err, err


def test_the_size_count_measures_shared_subtrees_once_and_finds_cycles():
    leaf = [1] * 9
    level = leaf
    for _ in range(12):  # 9^13 values expanded, 13 distinct lists
        level = [level] * 9
    assert "expands to more than 1,000 values" in expanded_size({"a": level}, 1000)
    assert expanded_size({"a": [leaf] * 9}, 1000) is None  # 1 + 1 + 1 + 9 * 10 values
    loop: dict = {}
    loop["self"] = loop
    assert "contains it" in expanded_size({"a": loop}, 1000)


def test_extends_reads_only_regular_files_of_bounded_size(tmp_path, write_spec, capsys):
    zero = write_spec("extends: /dev/zero\nname: x\n", "zero.yaml")
    assert "zero.yaml: extends: /dev/zero: not a regular file" in _err(capsys, zero)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_SPEC_BYTES + b"\n")
    child = write_spec("extends: big.yaml\nname: x\n", "child.yaml")
    assert (
        f"child.yaml: extends: {big}: {MAX_SPEC_BYTES + 3:,} bytes; a spec file holds at most"
        in _err(capsys, child)
    )
    fifo = tmp_path / "fifo.yaml"
    import os

    os.mkfifo(fifo)
    assert "fifo.yaml: not a regular file" in _err(capsys, fifo)  # would block forever on open


def test_a_key_given_twice_is_refused_naming_both_lines(write_spec, capsys):
    text = yaml.safe_dump(TINY, sort_keys=False)
    first = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("name:"))
    spec = write_spec(text + "name: again\n")
    last = len(text.splitlines()) + 1
    assert (
        f"spec.yaml: line {last}: not valid YAML: key 'name' given twice (lines {first} and {last})"
        in _err(capsys, spec)
    )
    nested = write_spec("extends: base.yaml\noptim:\n  lr: 0.001\n  lr: 0.01\n", "nested.yaml")
    write_spec(TINY, "base.yaml")
    assert "nested.yaml: line 4: not valid YAML: key 'lr' given twice (lines 3 and 4)" in _err(
        capsys, nested
    )
    # a merge key is made to be overridden: not a duplicate
    merged = write_spec("extends: base.yaml\nx: &o {lr: 0.001}\n", "m.yaml")
    assert "given twice" not in _err(capsys, merged)  # refused for the unknown key x, not for <<
    ok = write_spec(
        "extends: base.yaml\noptim:\n  <<: {lr: 0.1, name: adam}\n  lr: 0.001\n", "ok.yaml"
    )
    assert main(["validate", str(ok)]) == 0


@pytest.mark.parametrize(
    "sweep,axis", [({"grid": {}}, "grid"), ({"points": []}, "points"), ({"zip": {}}, "zip")]
)
def test_an_empty_sweep_axis_in_a_file_is_refused_not_run_as_one_point(
    sweep, axis, write_spec, capsys
):
    spec = write_spec({**TINY, "sweep": sweep})
    assert f"spec.yaml: sweep.{axis}: empty; give it at least one entry" in _err(capsys, spec)
    spec = write_spec({**TINY, "sweep": {"grid": {"optim.lr": []}}})
    assert "optim.lr: empty list of values" in _err(capsys, spec)


def test_a_dumped_spec_validates_and_submits_again_and_an_override_may_clear_an_axis(
    write_spec, capsys, tmp_path
):
    """A point's config.yaml is a full dump: it must read back (its empty axes left out); ``-o
    sweep.zip={}`` on the command line clears an axis on purpose."""
    from mrihpc.specfile import load_spec, validate_dict

    spec, _ = load_spec(write_spec(TINY))
    dumped = spec.model_dump(mode="json")
    assert "grid" not in dumped["sweep"] and validate_dict(dumped, "again") == spec
    again = write_spec(dumped, "config.yaml")
    assert main(["validate", str(again)]) == 0
    swept = write_spec({**TINY, "sweep": {"zip": {"optim.lr": [1e-3, 2e-3]}}}, "swept.yaml")
    assert main(["validate", str(swept), "-o", "sweep.zip={}"]) == 0
    assert "1 point" in capsys.readouterr().out


def test_sweep_left_empty_on_purpose_still_drops_a_parents_sweep(write_spec, capsys):
    write_spec({**TINY, "sweep": {"grid": {"optim.lr": [1e-3, 1e-4]}}}, "parent.yaml")
    child = write_spec("extends: parent.yaml\nsweep: {}\n", "child.yaml")
    assert main(["validate", str(child)]) == 0
    assert "1 point" in capsys.readouterr().out
