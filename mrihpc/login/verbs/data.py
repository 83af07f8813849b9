"""``data synth KIND OUT [options]``: every workload's synthetic twin, in its real format. Each
workload declares its twin (``workloads.SynthTwin``: its word, options and writer) and nothing
here names one; the kinds are looked up only when this verb runs (the workloads' modules import
pydantic, which the other verbs never need)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("data", help="data utilities")
    data = s.add_subparsers(dest="data_verb", required=True)
    s = data.add_parser(
        "synth",
        add_help=False,
        help="write synthetic data in a workload's real layout "
        "(mrihpc data synth -h lists the kinds)",
    )
    s.add_argument("kind", nargs="?", metavar="KIND")
    s.add_argument("rest", nargs=argparse.REMAINDER, metavar="OUT [options]")
    s.add_argument("-h", "--help", action="store_true")
    s.set_defaults(fn=cmd_synth)


def cmd_synth(args) -> int:
    from mrihpc import workloads

    twins = workloads.twins()
    if args.kind not in twins:
        listing = "\n".join(f"  {kind:10s} {twin.help}" for kind, twin in twins.items())
        usage = (
            "usage: mrihpc data synth KIND OUT [options]   (mrihpc data synth KIND -h: its "
            f"options)\n\nkinds:\n{listing}"
        )
        if args.kind is None and args.help:
            print(usage)
            return 0
        print(
            f"{usage}\n\nmrihpc data synth: "
            f"{'a KIND is required' if args.kind is None else f'unknown kind {args.kind!r}'}; "
            f"allowed: {', '.join(twins)}",
            file=sys.stderr,
        )
        return 2
    twin = twins[args.kind]
    parser = argparse.ArgumentParser(prog=f"mrihpc data synth {twin.kind}", description=twin.help)
    parser.add_argument("out")
    for flags, options in twin.arguments:
        parser.add_argument(*flags, **options)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(args.rest + (["-h"] if args.help else []))
    print(workloads.resolve(twin.write)(Path(options.out), options))
    return 0
