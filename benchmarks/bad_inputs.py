"""Bad inputs counted by what mrihpc does with them, for faults.py: damaged data files of every
workload's format (``mrihpc submit``) and damaged run files under every run-reading verb.

Each case runs the real CLI in this process and lands in one class, first column best:
  named the file             data: refused (exit 2) naming the file, nothing queued; a run verb:
                             the damaged file named on stderr after what it could still read
  error not naming the file  an error that does not say which file
  traceback                  an exception escaped the CLI
  silently accepted          exit 0 and nothing said: trained on or read as if good
"""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml

from bad_data_cases import DATA, INPAINT, _inpaint, _knee  # benchmarks/: beside this script

CLASSES = ("named the file", "error not naming the file", "traceback", "silently accepted")


def run_cli(argv: list[str]) -> tuple[int | None, str]:
    """(exit code or None when an exception escaped, stderr)."""
    from mrihpc.login.cli import main

    err = io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            return main(argv), err.getvalue()
    except Exception as e:  # noqa: BLE001 - that is the "traceback" class
        return None, f"{err.getvalue()}\n{type(e).__name__}: {e}"


def classify(code: int | None, err: str, named: str, queued: bool = False) -> str:
    if code is None or "Traceback" in err:
        return "traceback"
    if code == 0 and not err:
        return "silently accepted"
    return "named the file" if named in err and not queued else "error not naming the file"


# ----------------------------------------------------------------------------- data
def bad_data(work: Path) -> dict:
    """{workload: {class: count, "cases": {case: class}}}: each case damages a fresh copy and
    submits."""
    out = {}
    for workload, (make, cases) in DATA.items():
        clean, spec_of = make(work / "clean" / workload)
        counts = {c: 0 for c in CLASSES} | {"cases": {}}
        for n, (case, damage) in enumerate(cases):
            root = work / workload / str(n)
            shutil.copytree(clean, root, symlinks=True)
            named = damage(root)
            assert isinstance(named, Path), (case, named)  # the file the refusal must name
            spec = spec_of(root)
            spec = _inpaint(spec, root) if case in INPAINT else spec
            path = root.parent / f"{n}.yaml"
            path.write_text(yaml.safe_dump(spec))
            runs = root.parent / f"runs{n}"
            code, err = run_cli(["submit", str(path), "--runs", str(runs)])
            got = classify(code, err, str(named), queued=runs.exists())
            counts[got] += 1
            counts["cases"][case] = got if got == CLASSES[0] else f"{got}: {err.strip()[-160:]}"
        out[workload] = counts
    return out | {"total": {c: sum(v[c] for v in out.values()) for c in CLASSES}}


# ----------------------------------------------------------------------------- damaged runs
def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


RUN_DAMAGE = {
    "manifest cut in half": ("manifest.json", _cut),
    "manifest emptied": ("manifest.json", lambda p: p.write_bytes(b"")),
    "manifest not UTF-8": ("manifest.json", lambda p: p.write_bytes(b'{"points": "\xff"}')),
    "manifest without points": (
        "manifest.json",
        lambda p: p.write_text('{"points": 3, "submissions": []}'),
    ),
    "status cut in half": ("points/0/status.json", _cut),
    "status a list": ("points/0/status.json", lambda p: p.write_text("[1]")),
    "metrics not UTF-8": (
        "points/0/metrics.jsonl",
        lambda p: p.write_bytes(b"\xff\xfe\n" + p.read_bytes()),
    ),
    "metrics non-object lines": (
        "points/0/metrics.jsonl",
        lambda p: p.write_bytes(b"[1]\n3\n" + p.read_bytes()),
    ),
    "provenance cut in half": ("points/0/provenance.json", _cut),
}
#: verb -> the files it reads (a damage elsewhere is nothing for it to say)
RUN_VERBS = {
    ("status",): ("manifest", "status"),
    ("status", "--provenance"): ("manifest", "status", "provenance"),
    ("results",): ("manifest", "status", "metrics"),
    ("results", "--csv"): ("manifest", "status", "metrics"),
    ("logs", "0"): ("manifest",),
    ("resubmit", "--failed"): ("manifest", "status"),
}


def damaged_runs(work: Path) -> dict:
    """{verb: {class: count}} over RUN_DAMAGE on copies of one finished 2-point local run."""
    spec = work / "run.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                **_knee(work / "data")[1](work / "data" / "knee"),
                "name": "damaged",
                "sweep": {"grid": {"optim.lr": [2e-3, 1e-3]}},
            }
        )
    )
    code, err = run_cli(["submit", str(spec), "--runs", str(work / "runs")])
    assert code == 0, err
    finished = next((work / "runs" / "damaged").iterdir())
    out = {}
    for verb, reads in RUN_VERBS.items():
        counts = {c: 0 for c in CLASSES} | {"cases": {}}
        for n, (damage, (name, spoil)) in enumerate(RUN_DAMAGE.items()):
            if not damage.startswith(reads):
                continue
            run = work / "copies" / f"{verb[0]}{len(verb)}-{n}"
            shutil.copytree(finished, run, symlinks=True)
            spoil(run / name)
            code, err = run_cli([verb[0], str(run), *verb[1:]])
            got = classify(code, err, str(run / name))
            counts[got] += 1
            counts["cases"][damage] = got if got == CLASSES[0] else f"{got}: {err.strip()[-160:]}"
        out[" ".join(verb)] = counts
    return out
