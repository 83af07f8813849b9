"""The ``mrihpc`` command. Each group of verbs lives in ``mrihpc.login.verbs`` with its
arguments; here they are assembled, and every user mistake (a bad spec, a missing run
directory, an unreadable data file) becomes one line per problem and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from mrihpc.data import DataError
from mrihpc.login.live import ServerError
from mrihpc.login.views import RunError
from mrihpc.login.verbs import data, live, local, report, sweep
from mrihpc.paths import CheckpointError, DamagedFile
from mrihpc.errors import SpecError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mrihpc", description="MRI deep-learning training on Slurm from a YAML job spec."
    )
    sub = p.add_subparsers(dest="verb", required=True)
    for group in (sweep, report, local, live, data):  # the order of `mrihpc --help`
        group.add_verbs(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as e:
        print("\n".join(e.problems), file=sys.stderr)
    except (
        RunError,
        DataError,
        ServerError,
        CheckpointError,
        DamagedFile,
        OSError,
    ) as e:  # OSError: a full disk, a missing file
        print(f"mrihpc {args.verb}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
