"""Command lines and fresh processes for the tests (plain Python: no pytest, no fastinit import).

``argv`` spells a ``fastinit`` command line from keywords; ``TINY_TRAIN`` holds the options of a
training run that takes a second or two; ``fastinit_command`` and ``run_python`` run a command or
a piece of Python in a process of its own.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ``fastinit train`` on a few hundred MNIST images, on numpy (nothing to compile).
TINY_TRAIN = dict(train_limit=300, test_limit=50, backend="numpy")


def argv(command, *args, **options):
    """The argument list of ``fastinit COMMAND``, options spelled from keywords.

    ``train_limit=300`` gives ``--train-limit 300``, a one-letter name one dash (``q=True``
    gives ``-q``), ``True`` the bare flag, a list or tuple its values one after another;
    ``None`` and ``False`` leave the option out. Options follow ``args`` in keyword order.
    """
    out = [command, *map(str, args)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        out.append(("-" if len(name) == 1 else "--") + name.replace("_", "-"))
        if value is not True:
            out.extend(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])
    return out


def fastinit_command(args):
    """``[python, -m, fastinit, *args]``: the command line of ``fastinit`` in a fresh process."""
    return [sys.executable, "-m", "fastinit", *map(str, args)]


def run_python(code, env=None, timeout=600):
    """Run ``code`` with this interpreter in a fresh process from the repository's root.

    ``env`` is the whole environment (default: this process's). Returns the
    ``subprocess.CompletedProcess`` with ``stdout`` and ``stderr`` as text.
    """
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=os.environ if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
