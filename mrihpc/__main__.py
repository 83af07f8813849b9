"""``python -m mrihpc``: the ``mrihpc`` command (``mrihpc.login.cli``)."""

import sys

from mrihpc.login.cli import main

if __name__ == "__main__":
    sys.exit(main())
