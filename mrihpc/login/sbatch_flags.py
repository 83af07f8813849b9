"""The sbatch flags researchers type every day, on ``submit`` and ``resubmit``: each maps onto a
key of the spec's ``cluster`` section and is validated like it (``submit --dry-run`` shows the
resulting script). ``-p gpu -t 04:00:00 --gres gpu:2`` is ``-o cluster.partition=gpu -o
cluster.time=04:00:00 -o cluster.gpu_request=gres -o cluster.gpus_per_node=2``."""

from __future__ import annotations

import argparse
import json
import re

#: (flags, dest, cluster key, help); values are strings unless the key is a count
FLAGS = [
    (("-p", "--partition"), "partition", "partition", "Slurm partition"),
    (("-t", "--time"), "time", "time", "time limit per point (sbatch formats)"),
    (("-J", "--job-name"), "job_name", "job_name", "job name"),
    (("-A", "--account"), "account", "account", "account to charge"),
    (("--qos",), "qos", "qos", "quality of service"),
    (("--mail-user",), "mail_user", "mail_user", "address for Slurm's mails"),
    (("--mail-type",), "mail_type", "mail_type", "mail events, e.g. END,FAIL"),
    (("-C", "--constraint"), "constraint", "constraint", "node features"),
    (("-x", "--exclude"), "exclude", "exclude", "nodes never to run on"),
    (("-N", "--nodes"), "nodes", "nodes", "nodes per point"),
    (("--gpus-per-node",), "gpus_per_node", "gpus_per_node", "GPUs per node (--gpus-per-node)"),
    (("--gres",), "gres", None, "gpu:N (--gres=gpu:N)"),
]
COUNTS = {"nodes", "gpus_per_node"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sbatch flags (onto the spec's cluster section)")
    for flags, dest, _, text in FLAGS:
        group.add_argument(*flags, dest=f"sbatch_{dest}", metavar=dest.upper(), help=text)


def changes(args: argparse.Namespace) -> dict[str, str]:
    """``{cluster key: value}`` of the flags given, as the YAML scalars ``-o`` takes."""
    out: dict[str, str] = {}
    for flags, dest, key, _ in FLAGS:
        value = getattr(args, f"sbatch_{dest}", None)
        if value is None:
            continue
        if dest == "gres":
            m = re.fullmatch(r"gpu:(\d+)", value)
            if not m:
                from mrihpc.errors import SpecError

                raise SpecError(
                    [
                        f"--gres {value}: expected gpu:N (a count of GPUs per node); a GPU type "
                        "goes in --constraint"
                    ]
                )
            out["gpu_request"], out["gpus_per_node"] = "gres", m.group(1)
            continue
        if dest == "gpus_per_node":
            out["gpu_request"] = "gpus"
        # strings quoted: YAML would read 01:00:00 as a number and yes as true
        out[key] = value if key in COUNTS else json.dumps(value)
    return out


def as_overrides(args: argparse.Namespace) -> list[str]:
    return [f"cluster.{k}={v}" for k, v in changes(args).items()]


def apply(spec, args: argparse.Namespace):
    """``spec`` with the flags applied to its cluster section, validated (``resubmit``)."""
    import yaml

    return with_cluster(
        spec, {k: yaml.safe_load(v) for k, v in changes(args).items()}, "the sbatch flags"
    )


def with_cluster(spec, new: dict, origin: str):
    """``spec`` with ``new`` values on its cluster section, validated; a SpecError names
    ``origin``."""
    from pydantic import ValidationError

    from mrihpc.errors import SpecError
    from mrihpc.spec_cluster import ClusterSpec

    if not new:
        return spec
    try:
        cluster = ClusterSpec.model_validate({**spec.cluster.model_dump(exclude_unset=True), **new})
    except ValidationError as e:
        raise SpecError(
            [
                f"cluster.{'.'.join(map(str, err['loc']))}: {err['msg']} (from {origin})"
                for err in e.errors()
            ]
        ) from None
    return spec.model_copy(update={"cluster": cluster})
