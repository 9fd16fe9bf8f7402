"""The command line end to end on small sizes: histogram, show, errors, interrupts."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from commands import TINY_TRAIN, argv, fastinit_command, run_python

import fastinit.experiments.histogram as histogram_module
from fastinit.cli import main
from fastinit.show import describe
from fastinit.store import open_read

SMALL = ["--layers", "2", "--units", "8", "--samples", "16", "--backend", "numpy"]
TINY_RUN = dict(iterations=20, eval_every=10, **TINY_TRAIN)  # fastinit train in a second


def _run(capsys, *args):
    code = main(list(args))
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
    code, stdout, _ = _run(
        capsys, "histogram", *SMALL, "--init", "std=1", "xavier", "--out", str(out), "--plot", str(plot)
    )
    assert code == 0
    assert "std=1" in stdout and "xavier" in stdout and "sat %" in stdout
    assert f"wrote figure {plot}" in stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig-gradient-histogram.png").read_bytes()[
        :4
    ] == b"\x89PNG"  # --gradients: on by default
    with open_read(out) as f:
        assert sorted(f["/histogram/sigmoid"]) == ["std=1", "xavier"]
        assert f["/histogram/sigmoid/xavier/activations"].shape == (2, 16, 8)
        assert f["/histogram/sigmoid/xavier/gradients"].shape == (2, 16, 8)
        assert "histogram" in f.attrs["command_line"]


def test_histogram_no_gradients(tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert (
        _run(capsys, "histogram", *SMALL, "--init", "xavier", "--no-gradients", "-q", "--out", str(out))[0]
        == 0
    )
    assert not (tmp_path / "r-histogram-sigmoid-gradient-histogram.png").exists()
    assert (tmp_path / "r-histogram-sigmoid-gradients.png").exists()  # the RMS against depth stays
    with open_read(out) as f:
        assert (
            "gradients" not in f["/histogram/sigmoid/xavier"] and "grad_rms" in f["/histogram/sigmoid/xavier"]
        )


def test_default_plot_beside_the_results_and_no_plot(tmp_path, capsys):
    out = tmp_path / "study.h5"

    def histogram(activation, init, *more):
        args = ["--activation", activation, "--init", init, "-q", *more, "--out", str(out)]
        return _run(capsys, "histogram", *SMALL, *args)

    assert histogram("tanh", "xavier")[0] == 0
    assert (tmp_path / "study-histogram-tanh.png").exists()
    code, stdout, _ = histogram("relu", "he", "--no-plot")
    assert code == 0 and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "study-histogram-tanh-depth.png",
        "study-histogram-tanh-gradient-histogram.png",
        "study-histogram-tanh-gradients.png",
        "study-histogram-tanh.png",
        "study.h5",
        "study.h5.parts",
    ]
    info = describe(out)
    assert info.node("/histogram/tanh/xavier") is not None and info.node("/histogram/relu/he") is not None
    # --plot with no file name: the default file (it used to fail with "expected one argument")
    assert histogram("relu", "he", "--plot")[0] == 0
    assert (tmp_path / "study-histogram-relu.png").exists()


def test_train_draws_its_figures_by_default(tmp_path, capsys):
    out = tmp_path / "t.h5"
    code = _run(capsys, *argv("train", init="he", **TINY_RUN, q=True, out=out))[0]
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t-accuracy.png",
        "t-activations-he.png",
        "t-gradients-he.png",
        "t-loss.png",
        "t.h5",
        "t.h5.parts",
    ]


def test_show_tree_and_stats(tmp_path, capsys):
    out = tmp_path / "r.h5"
    _run(capsys, "histogram", *SMALL, "--init", "std=0.01", "xavier", "--no-plot", "-q", "--out", str(out))
    code, stdout, _ = _run(capsys, "show", str(out))
    assert code == 0
    assert "last command: " in stdout and "fastinit 0.1.0" in stdout
    assert "activations" in stdout and "(2, 16, 8)" in stdout and "gzip" in stdout
    assert "[complete]" in stdout
    assert "mean, nonfinite, saturated, std, theory_std, weight_std, weight_std_measured  (2,) each" in stdout
    assert "/histogram/sigmoid/*  per-layer" in stdout  # one table for the sibling inits
    header = next(line for line in stdout.splitlines() if line.strip().startswith("group"))
    assert header.split()[:5] == ["group", "layer", "mean", "std", "saturated"]
    rows = [line.split() for line in stdout.splitlines()[stdout.splitlines().index(header) + 1 :]]
    assert rows[0][:2] == ["std=0.01", "1"] and rows[2][:2] == ["xavier", "1"] and len(rows) == 4
    info = describe(out)
    assert float(rows[2][3]) == pytest.approx(info.node("/histogram/sigmoid/xavier/std").value[0], rel=1e-3)
    code, one, _ = _run(capsys, "show", str(out), "/histogram/sigmoid/xavier")
    assert "/histogram/sigmoid/xavier  per-layer" in one
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


def _files(folder):
    """{relative path: bytes} of every file below ``folder`` (a results set's parts included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    before = _files(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "histogram" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "r.h5")]
    if argv[0] == "histogram":
        argv[1:1] = SMALL
    code, _, err = _run(capsys, *argv)
    assert code == status
    _assert_one_line_error(err)
    assert needle in err
    assert _files(tmp_path) == before


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
    before, parts = out.read_bytes(), sorted(os.listdir(tmp_path / "r.h5.parts"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(histogram_module, "run", interrupted)
    code, _, err = _run(capsys, "histogram", *SMALL, "--init", "he", "--out", str(out))
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path / "r.h5.parts")) == parts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]


def test_ctrl_c_while_writing_leaves_a_readable_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.h5"
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(out)])
    real_write = histogram_module.write

    def write_then_interrupt(f, results):
        real_write(f, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(histogram_module, "write", write_then_interrupt)
    code, _, err = _run(capsys, "histogram", *SMALL, "--init", "he", "--no-plot", "--out", str(out))
    assert code == 130
    with open_read(out) as f:
        assert f["/histogram/sigmoid/xavier"].attrs["status"] == "complete"
        assert f["/histogram/sigmoid/he"].attrs["status"] == "interrupted"
        assert f["/histogram/sigmoid/he/activations"].shape == (2, 16, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]


def test_a_bug_while_writing_keeps_its_traceback_and_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.h5"
    main(["histogram", *SMALL, "--init", "xavier", "--no-plot", "-q", "--out", str(out)])
    before, parts = out.read_bytes(), sorted(os.listdir(tmp_path / "r.h5.parts"))

    def broken(f, results):
        f.create_group("/half-written")
        raise RuntimeError("a bug")

    monkeypatch.setattr(histogram_module, "write", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["histogram", *SMALL, "--init", "he", "--no-plot", "--out", str(out)])
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path / "r.h5.parts")) == parts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.h5.parts"]


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
    run = subprocess.run(
        [exe, "histogram", *SMALL, "--init", "std=1", "he", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "he" in run.stdout and (tmp_path / "r-histogram-sigmoid.png").exists()
    with open_read(out) as f:
        acts = f["/histogram/sigmoid/he/activations"][()]
    assert acts.shape == (2, 16, 8) and np.all((acts > 0) & (acts < 1))
    show = subprocess.run([exe, "show", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert show.returncode == 0 and "/histogram/sigmoid/*  per-layer" in show.stdout
    bad = subprocess.run(
        [exe, "show", str(tmp_path / "r-histogram-sigmoid.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 1
    _assert_one_line_error(bad.stderr)


# --------------------------------------------------------------------------- bench-report

TINY_BENCH = """
import numpy as np
import pytest

X = np.random.default_rng(0).random(2000)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.benchmark(group="sum-2000")
def test_sum(benchmark, backend):
    f = np.sum if backend == "numpy" else (lambda a: sum(a.tolist()))
    benchmark.extra_info["gbs"] = 16e-6 / 1e-6 if backend == "numpy" else 0.25
    benchmark(f, X)


@pytest.mark.benchmark(group="square-2000")
def test_square_numpy(benchmark):
    benchmark.extra_info.update(backend="numpy", gflops=0.5)
    benchmark(np.square, X)


@pytest.mark.benchmark(group="square-2000")
def test_square_cpu(benchmark):
    benchmark.extra_info.update(backend="cpu")
    benchmark(lambda a: [v * v for v in a.tolist()], X)


@pytest.mark.benchmark(group="alone")
def test_alone(benchmark):
    benchmark(len, X)
"""


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """A real pytest-benchmark JSON file from a tiny, fast benchmark run."""
    folder = tmp_path_factory.mktemp("bench")
    (folder / "test_tiny_bench.py").write_text(TINY_BENCH)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_tiny_bench.py",
            "--benchmark-json=bench.json",
            "--benchmark-max-time=0.01",
            "--benchmark-min-rounds=3",
            "--benchmark-warmup=off",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        pytest.fail(f"tiny benchmark run failed:\n{run.stdout}\n{run.stderr}")
    return folder / "bench.json"


def test_bench_report_numbers_come_from_the_file(bench_json):
    import json

    from fastinit.benchreport import load_benchmarks

    raw = {b["fullname"].split("::")[-1]: b for b in json.loads(bench_json.read_text())["benchmarks"]}
    report = load_benchmarks(bench_json)
    assert report.groups == ["sum-2000", "square-2000", "alone"]
    assert [r.backend for r in report.group_rows("sum-2000")] == ["numpy", "cpu"]
    assert [r.backend for r in report.group_rows("square-2000")] == ["numpy", "cpu"]
    numpy_sum, cpu_sum = report.group_rows("sum-2000")
    assert cpu_sum.median == raw["test_sum[cpu]"]["stats"]["median"]
    assert cpu_sum.speedup == pytest.approx(
        raw["test_sum[numpy]"]["stats"]["median"] / raw["test_sum[cpu]"]["stats"]["median"]
    )
    assert numpy_sum.speedup == pytest.approx(1.0)
    assert numpy_sum.gbs == pytest.approx(16.0) and cpu_sum.gbs == pytest.approx(0.25)
    assert report.group_rows("square-2000")[0].gflops == pytest.approx(0.5)
    assert report.group_rows("alone")[0].speedup is None
    assert cpu_sum.ops == pytest.approx(1 / raw["test_sum[cpu]"]["stats"]["mean"])


def test_bench_report_command(bench_json, tmp_path, capsys):
    md, png = tmp_path / "BENCH.md", tmp_path / "bench.png"
    code, out, err = _run(capsys, "bench-report", str(bench_json), "--md", str(md), "--plot", str(png))
    assert code == 0, err
    assert md.read_text().strip() == out.strip()
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith(
        "| group | backend | mean | median | ops/s | GFLOP/s | GB/s | speed-up vs numpy"
    )
    assert len(table) == 1 + 5
    assert any(line.startswith("| sum-2000 | numpy |") and "| 1x |" in line for line in table)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "no such file"),
        ("not json at all", "not a JSON file"),
        ('{"hello": 1}', "not a pytest-benchmark JSON file"),
        ('{"benchmarks": []}', "no timed benchmarks"),
    ],
)
def test_bench_report_bad_files(tmp_path, capsys, content, needle):
    path = tmp_path / "bench.json"
    if content is not None:
        path.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _run(
        capsys, "bench-report", str(path), "--md", str(tmp_path / "o.md"), "--plot", str(tmp_path / "o.png")
    )
    assert code == 1
    _assert_one_line_error(err)
    assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bench_report_reads_the_newest_file_of_a_folder(bench_json, tmp_path, capsys):
    import json
    import time

    folder = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    old = json.loads(bench_json.read_text())
    old["benchmarks"] = old["benchmarks"][:1]
    (folder / "0001_old.json").write_text(json.dumps(old))
    (folder / "0002_new.json").write_text(bench_json.read_text())
    past = time.time() - 3600
    os.utime(folder / "0001_old.json", (past, past))
    code, out, _ = _run(capsys, "bench-report", str(tmp_path / ".benchmarks"))
    assert code == 0 and "0002_new.json" in out and out.count("| sum-2000 |") == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "bench-report", str(empty))
    assert code == 1 and "no .json benchmark files" in err


def test_bench_report_bad_output_paths(bench_json, tmp_path, capsys):
    code, _, err = _run(capsys, "bench-report", str(bench_json), "--plot", str(tmp_path / "x.bmp"))
    assert code == 1 and "must end in" in err
    code, _, err = _run(capsys, "bench-report", str(bench_json), "--md", str(tmp_path / "no" / "x.md"))
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signal_during_train_keeps_finished_runs_and_cleans_up(
    tmp_path, capsys, monkeypatch, sig, status
):
    """SIGTERM and SIGHUP (a batch scheduler's or ``timeout``'s stop), sent for real in the
    middle of the second run, unwind like Ctrl-C: exit 128 + signal, one line and no
    traceback, no temp or lock file, the first run kept complete and the second marked
    interrupted; the test process's own handlers are restored afterwards."""
    from fastinit import mlp

    iterations = 30
    calls = {"n": 0}
    real = mlp.MLP.train_step_indices

    def step_then_signal(self, idx, lr, **kwargs):
        calls["n"] += 1
        if calls["n"] == iterations + 7:  # step 7 of the second run
            assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN, before), (
                "no handler: would kill pytest"
            )
            os.kill(os.getpid(), sig)
        return real(self, idx, lr, **kwargs)

    monkeypatch.setattr(mlp.MLP, "train_step_indices", step_then_signal)
    before = signal.getsignal(sig)
    out = tmp_path / "t.h5"
    tiny = dict(eval_every=10, train_limit=500, test_limit=100, backend="numpy")
    code, _, err = _run(
        capsys, *argv("train", init=("he", "xavier"), iterations=iterations, **tiny, out=out, q=True)
    )
    assert code == status, err
    assert "Traceback" not in err and signal.Signals(sig).name in err
    assert signal.getsignal(sig) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5", "t.h5.parts"]
    assert not [p for p in (tmp_path / "t.h5.parts").iterdir() if p.name.startswith(".")]  # no temp part
    with open_read(out) as f:
        assert f["/train/he"].attrs["status"] == "complete"
        assert f["/train/xavier"].attrs["status"] == "interrupted"
        assert f["/train/he/loss"].shape == (iterations,)


@pytest.mark.parametrize("option", ["--seed", "--iterations", "--batch-size"])
def test_integers_beyond_int64_are_refused_before_any_work(tmp_path, capsys, option):
    code, _, err = _run(capsys, "train", option, str(2**64), "--out", str(tmp_path / "t.h5"))
    assert code == 2 and "too large" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_error_does_not_import_matplotlib():
    """Classifying an error must not import matplotlib (with an unwritable HOME it warns first)."""
    script = (
        "import sys; from fastinit.cli import main; code = main(['histogram', '--init', 'bogus']); "
        "print(code, 'matplotlib' in sys.modules)"
    )
    proc = run_python(script, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr


def _until_it_catches_sigterm(proc, timeout=60.0):
    """Wait until ``proc`` has a SIGTERM handler (its ``SigCgt`` mask in /proc); return the extra
    seconds still to sleep: 0, or 0.4 where there is no /proc to read."""
    status = Path(f"/proc/{proc.pid}/status")
    if not status.exists():
        return 0.4  # a guess: by then the interpreter has started fastinit.cli
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            caught = next(ln for ln in status.read_text().splitlines() if ln.startswith("SigCgt:"))
        except (OSError, StopIteration):
            break  # the process is gone: communicate() tells the rest
        if int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
            break
        time.sleep(0.005)
    return 0.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_at_start_up_gives_no_traceback(tmp_path, sig):
    """Ctrl-C or SIGTERM while the command is still importing its libraries or loading the data:
    a quiet exit (128 + signal), never a traceback, never a temp or lock file."""
    # Counted from the moment the process catches SIGTERM (read from /proc where there is one:
    # main() installs its three handlers together), not from its start: before that no Python
    # program has a handler installed, and on a busy machine that moment comes late.
    for delay in (0.0, 0.3, 0.6, 1.1):
        out = tmp_path / f"t{delay}.h5"
        cmd = fastinit_command(argv("train", iterations=100000, backend="numpy", q=True, out=out))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay + _until_it_catches_sigterm(proc))
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()  # never leave a training process behind, whatever happened
            proc.wait()
        assert "Traceback" not in err, (delay, err)
        assert proc.returncode == 128 + sig, (delay, proc.returncode, err)
    # Results (a top file, and the parts folder of a run stopped once it had started) and nothing else.
    assert all(p.suffix in (".h5", ".parts") for p in tmp_path.iterdir())
    assert not [
        name for _, _, files in os.walk(tmp_path) for name in files if name.endswith((".tmp", ".lock"))
    ]


def test_one_output_folder_for_every_command_and_show_reads_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "histogram", *SMALL, "--init", "xavier", "-q")[0] == 0
    assert _run(capsys, *argv("train", init="he", **TINY_RUN, q=True))[0] == 0
    folder = tmp_path / "fastinit-results"
    assert sorted(p.name for p in folder.iterdir()) == [
        "fastinit.h5",
        "fastinit.h5.parts",
        "histogram-sigmoid-depth.png",
        "histogram-sigmoid-gradient-histogram.png",
        "histogram-sigmoid-gradients.png",
        "histogram-sigmoid.png",
        "mnist-accuracy.png",
        "mnist-activations-he.png",
        "mnist-gradients-he.png",
        "mnist-loss.png",
    ]
    code, stdout, _ = _run(capsys, "show")
    assert (
        code == 0
        and "fastinit-results/fastinit.h5" in stdout
        and "histogram/" in stdout
        and "train/" in stdout
    )
