"""`python -m kerasrl ...`: the command line (see `kerasrl.cli`)."""

import sys

from kerasrl.cli import main

if __name__ == "__main__":
    sys.exit(main())
