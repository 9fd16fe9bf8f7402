"""The README stays short, and the Python in it and in docs/kernels.md runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("doc", ["README.md", "docs/kernels.md"])
def test_python_examples_run(doc, tmp_path):
    """Every ```python block of ``doc``, in order, as one script (later blocks use earlier names)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    assert blocks
    script = tmp_path / "example.py"  # a file, so that @njit(cache=True) can cache
    script.write_text("\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
