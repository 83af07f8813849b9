"""Nothing gets in: a shell payload in any string field of a spec never runs.

Each payload goes into one field at a time. The spec is then either refused at validation
(a control character, a name that is not a POSIX name, an image that is not a reference, ...),
or its generated sbatch script and enter script are RUN by bash with inert stand-ins (srun,
docker, apptainer, scontrol record their arguments and exit; no Docker engine, Apptainer or
pyxis can run here), for all three container runtimes. A payload that ran would create its
marker file; none may exist, and each accepted value must reach its tool as one argument.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TINY, merge, scoped_env
from mrihpc.login import container
from mrihpc.login.launch import sbatch_script
from mrihpc.login.checks import prepare
from mrihpc.specfile import SpecError

INERT = Path(__file__).parent / "standins" / "inert"
IMAGES = {
    "pyxis": "nvcr.io#nvidia/pytorch:24.05-py3",
    "docker": "nvcr.io/nvidia/pytorch:24.05-py3",
    "apptainer": "docker://nvcr.io/nvidia/pytorch:24.05-py3",
}
#: key.path -> how to place a payload there (cluster.setup is shell by design and not a field here)
FIELDS = {
    "cluster.partition": lambda p: {"cluster": {"partition": p}},
    "cluster.account": lambda p: {"cluster": {"account": p}},
    "cluster.qos": lambda p: {"cluster": {"qos": p}},
    "cluster.constraint": lambda p: {"cluster": {"constraint": p}},
    "cluster.job_name": lambda p: {"cluster": {"job_name": p}},
    "cluster.mail_user": lambda p: {"cluster": {"mail_user": p}},
    "cluster.sbatch.value": lambda p: {"cluster": {"sbatch": {"comment": p}}},
    "cluster.sbatch.key": lambda p: {"cluster": {"sbatch": {p: "x"}}},
    "container.image": lambda p: {"container": {"image": p}},
    "container.mounts": lambda p: {"container": {"mounts": [f"/tmp/{p}:/data{p}"]}},
    "container.workdir": lambda p: {"container": {"workdir": f"/tmp/{p}"}},
    "container.env.value": lambda p: {"container": {"env": {"PROBE": p}}},
    "container.env.key": lambda p: {"container": {"env": {p: "x"}}},
    "container.python": lambda p: {"container": {"python": f"python {p}"}},
    "container.docker.host": lambda p: {"container": {"docker": {"host": f"unix:///tmp/{p}"}}},
    "container.docker.wrapper": lambda p: {"container": {"docker": {"wrapper": f"docker {p}"}}},
    "container.docker.shm_size": lambda p: {"container": {"docker": {"shm_size": p}}},
    "container.apptainer.command": lambda p: {
        "container": {"apptainer": {"command": f"apptainer{p}"}}
    },
}
PAYLOADS = {
    "subshell": "$(touch {m})",
    "backticks": "`touch {m}`",
    "semicolon": "x; touch {m}",
    "single quote": "x'; touch {m}; '",
    "double quote": 'x"; touch {m}; "',
    "newline": "x\ntouch {m}",
    "ampersand": "x && touch {m} &",
}


def _spec(runtime: str, field: str, payload: str) -> dict:
    base = merge(
        TINY,
        cluster={"executor": "slurm", "time": "10:00", "gpus_per_node": 1, "tasks_per_node": 1},
        container={"runtime": runtime, "image": IMAGES[runtime]},
    )
    extra = FIELDS[field](payload)
    for section, values in extra.items():
        merged = dict(base[section])
        for key, value in values.items():
            merged[key] = (
                {**merged[key], **value}
                if isinstance(value, dict) and isinstance(merged.get(key), dict)
                else value
            )
        base[section] = merged
    return base


@pytest.mark.parametrize("runtime", ["pyxis", "docker", "apptainer"])
def test_no_payload_in_any_string_field_executes(runtime, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PATH", f"{INERT}:{os.environ['PATH']}")
    log = tmp_path / "standin.log"
    monkeypatch.setenv("MRIHPC_STANDIN_LOG", str(log))
    refused, ran = [], []
    for field in FIELDS:
        for kind, template in PAYLOADS.items():
            marker = markers / f"{field}-{kind.replace(' ', '_')}"
            payload = template.format(m=marker)
            case = tmp_path / f"{field}-{kind.replace(' ', '_')}"
            case.mkdir()
            path = case / "spec.yaml"
            path.write_text(yaml.safe_dump(_spec(runtime, field, payload)))
            try:
                spec, _, points, _ = prepare(str(path), check_paths=False)
            except SpecError:
                refused.append((field, kind))
                continue
            run_root = case / "run"
            (run_root / "logs").mkdir(parents=True)
            with scoped_env("MRIHPC_CACHE", str(case / "cache")):
                script = sbatch_script(spec, run_root / "logs", len(points))
                if runtime != "pyxis":
                    (run_root / container.ENTER_SCRIPT).write_text(
                        container.enter_script(spec, run_root)
                    )
            (case / "job.sh").write_text(script)
            env = {
                **os.environ,
                "SLURM_JOB_ID": "7",
                "SLURM_ARRAY_JOB_ID": "7",
                "SLURM_ARRAY_TASK_ID": "0",
                "SLURM_PROCID": "0",
                "SLURM_LOCALID": "0",
            }
            out = subprocess.run(
                ["bash", str(case / "job.sh")], capture_output=True, text=True, env=env, timeout=30
            )
            ran.append((field, kind, out.returncode))
    print(f"{runtime}: {len(refused)} refused at validation, {len(ran)} scripts run")
    executed = sorted(p.name for p in markers.iterdir())
    assert executed == [], f"payloads ran: {executed}"
    assert len(refused) + len(ran) == len(FIELDS) * len(PAYLOADS)
    # every newline is refused at validation; most other payloads are accepted and their scripts ran
    assert {k for _, k in refused} >= {"newline"} and len(ran) >= len(FIELDS) * 3
    recorded = log.read_text()
    assert "srun" in recorded and (runtime == "pyxis" or runtime in recorded)
    # an accepted payload reached its tool unchanged, as one argument (here: the working directory)
    workdir = f"/tmp/{PAYLOADS['subshell'].format(m=markers / 'container.workdir-subshell')}"
    expected = f"--container-workdir={workdir}" if runtime == "pyxis" else workdir
    assert expected in recorded.splitlines()
