"""``python -m fastinit``: the same command line as the ``fastinit`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
