"""The verbs of the ``mrihpc`` command, in groups; each module adds its verbs' arguments
(``add_verbs``) and holds one ``cmd_<verb>(args) -> exit code`` per verb."""

import os

RUNS_DIR = os.environ.get("MRIHPC_RUNS", "runs")
OVERRIDE = dict(
    action="append",
    default=[],
    metavar="KEY.PATH=VALUE",
    help="override a spec value (YAML scalar)",
)
