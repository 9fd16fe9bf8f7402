"""The command line end to end on small sizes: histogram, show, errors, interrupts."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastinit.histogram as histogram_module
from fastinit.cli import main
from fastinit.store import describe, open_read

SMALL = ["--layers", "2", "--units", "8", "--samples", "16", "--backend", "numpy"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastinit: error: "), err
    assert "Traceback" not in err


def test_histogram_end_to_end(tmp_path, capsys):
    out = tmp_path / "r.h5"
    plot = tmp_path / "fig.png"
    code, stdout, _ = _run(capsys, "histogram", *SMALL, "--init", "std=1", "xavier", "--out", str(out),
                           "--plot", str(plot))
    assert code == 0
    assert "std=1" in stdout and "xavier" in stdout and "sat %" in stdout
    assert f"wrote figure {plot}" in stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    with open_read(out) as f:
        assert sorted(f["/histogram/sigmoid"]) == ["std=1", "xavier"]
        assert f["/histogram/sigmoid/xavier/activations"].shape == (2, 16, 8)
        assert "histogram" in f.attrs["command_line"]


def test_default_plot_beside_the_results_and_no_plot(tmp_path, capsys):
    out = tmp_path / "study.h5"
    assert _run(capsys, "histogram", *SMALL, "--activation", "tanh", "--init", "xavier", "-q", "--out", str(out))[0] == 0
    assert (tmp_path / "study-histogram-tanh.png").exists()
    code, stdout, _ = _run(capsys, "histogram", *SMALL, "--activation", "relu", "--init", "he", "-q",
                           "--no-plot", "--out", str(out))
    assert code == 0 and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study-histogram-tanh.png", "study.h5"]
    info = describe(out)
    assert info.node("/histogram/tanh/xavier") is not None and info.node("/histogram/relu/he") is not None


def test_show_tree_and_stats(tmp_path, capsys):
    out = tmp_path / "r.h5"
    _run(capsys, "histogram", *SMALL, "--init", "std=0.01", "xavier", "--no-plot", "-q", "--out", str(out))
    code, stdout, _ = _run(capsys, "show", str(out))
    assert code == 0
    assert "last command: " in stdout and "fastinit 0.1.0" in stdout
    assert "activations" in stdout and "(2, 16, 8)" in stdout and "gzip" in stdout
    assert "[complete]" in stdout
    assert "/histogram/sigmoid/xavier  per-layer" in stdout
    header = next(line for line in stdout.splitlines() if line.strip().startswith("layer"))
    assert header.split()[:4] == ["layer", "mean", "std", "saturated"]
    code, sub, _ = _run(capsys, "show", str(out), "/histogram/sigmoid/xavier", "--no-stats")
    assert code == 0 and "std=0.01/" not in sub and "per-layer" not in sub and "xavier/" in sub
    code, full, _ = _run(capsys, "show", str(out), "--all-attrs")
    assert "command_line" in full and "written_utc" in full


def test_help_and_version(capsys):
    assert _run(capsys, "--help")[0] == 0
    code, out, _ = _run(capsys, "histogram", "--help")
    assert code == 0 and "examples:" in out and "--plot" in out and "-histogram-<activation>.png" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and "fastinit" in out
    code, out, _ = _run(capsys)
    assert code == 2 and "histogram" in out


@pytest.mark.parametrize(
    "argv, status, needle",
    [
        (["histogram", "--activation", "softmax"], 2, "invalid choice: 'softmax'"),
        (["histogram", "--init", "bogus"], 2, "Valid names"),
        (["histogram", "--init", "std=-1"], 2, "must be >= 0"),
        (["histogram", "--init", "xavier", "xavier"], 2, "given twice"),
        (["histogram", "--layers", "0"], 2, "positive integer"),
        (["histogram", "--units", "ten"], 2, "positive integer"),
        (["histogram", "--seed", "-3"], 2, "non-negative"),
        (["histogram", "--backend", "tpu"], 2, "invalid choice: 'tpu'"),
        (["histogram", "--dtype", "float16"], 2, "invalid choice: 'float16'"),
        (["histogram", "--plot", "a.png", "--no-plot"], 2, "not allowed"),
        (["histogram", "--bogus-option"], 2, "unrecognized arguments"),
        (["histogram", "--out", "{tmp}/missing/r.h5"], 1, "does not exist"),
        (["histogram", "--out", "{tmp}"], 1, "is a directory"),
        (["histogram", "--out", "{tmp}/notes.txt"], 1, "not an HDF5 file"),
        (["histogram", "--plot", "{tmp}/fig.gif"], 1, "must end in"),
        (["histogram", "--plot", "{tmp}/missing/fig.png"], 1, "does not exist"),
        (["show", "{tmp}/nothere.h5"], 1, "no such file"),
        (["show", "{tmp}/notes.txt"], 1, "not an HDF5 file"),
        (["show", "{tmp}/r.h5", "/nogroup"], 1, "has no group /nogroup"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_gives_one_line_and_leaves_files_alone(tmp_path, capsys, argv, status, needle):
    (tmp_path / "notes.txt").write_text("precious")
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(tmp_path / "r.h5")])
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "histogram" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "r.h5")]
    if argv[0] == "histogram":
        argv[1:1] = SMALL
    code, _, err = _run(capsys, *argv)
    assert code == status
    _assert_one_line_error(err)
    assert needle in err
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_cuda_backend_without_device_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import fastinit.backends as backends

    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    code, _, err = _run(capsys, "histogram", "--backend", "cuda", "--out", str(tmp_path / "r.h5"))
    assert code == 1
    _assert_one_line_error(err)
    assert "no CUDA device" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_run_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.h5"
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(out)])
    before = out.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(histogram_module, "run_histogram", interrupted)
    code, _, err = _run(capsys, "histogram", *SMALL, "--init", "he", "--out", str(out))
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_ctrl_c_while_writing_leaves_a_readable_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.h5"
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(out)])
    real_write = histogram_module.write_histogram

    def write_then_interrupt(f, results):
        real_write(f, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(histogram_module, "write_histogram", write_then_interrupt)
    code, _, err = _run(capsys, "histogram", *SMALL, "--init", "he", "--no-plot", "--out", str(out))
    assert code == 130
    with open_read(out) as f:
        assert f["/histogram/sigmoid/xavier"].attrs["status"] == "complete"
        assert f["/histogram/sigmoid/he"].attrs["status"] == "interrupted"
        assert f["/histogram/sigmoid/he/activations"].shape == (2, 16, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_a_bug_while_writing_keeps_its_traceback_and_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.h5"
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(out)])
    before = out.read_bytes()

    def broken(f, results):
        f.create_group("/half-written")
        raise RuntimeError("a bug")

    monkeypatch.setattr(histogram_module, "write_histogram", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["histogram", *SMALL, "--init", "he", "--no-plot", "--out", str(out)])
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTINIT_DEBUG", "1")
    with pytest.raises(Exception, match="no such file"):
        main(["show", str(tmp_path / "nothere.h5")])


def _console_script():
    found = Path(sys.executable).parent / "fastinit"
    return str(found) if found.exists() else shutil.which("fastinit")


@pytest.mark.skipif(_console_script() is None, reason="the fastinit console script is not installed")
def test_console_script_subprocess(tmp_path):
    exe = _console_script()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = tmp_path / "r.h5"
    run = subprocess.run([exe, "histogram", *SMALL, "--init", "std=1", "he", "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "he" in run.stdout and (tmp_path / "r-histogram-sigmoid.png").exists()
    with open_read(out) as f:
        acts = f["/histogram/sigmoid/he/activations"][()]
    assert acts.shape == (2, 16, 8) and np.all((acts > 0) & (acts < 1))
    show = subprocess.run([exe, "show", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert show.returncode == 0 and "/histogram/sigmoid/he  per-layer" in show.stdout
    bad = subprocess.run([exe, "show", str(tmp_path / "r-histogram-sigmoid.png")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 1
    _assert_one_line_error(bad.stderr)
