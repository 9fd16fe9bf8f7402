"""``python -m fastinit``: the same command line as the ``fastinit`` console script."""

from .cli import run

if __name__ == "__main__":
    run()
