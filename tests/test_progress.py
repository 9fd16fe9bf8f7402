"""Progress off a terminal: heartbeat lines and a result line on stderr; nothing when disabled."""

import io

from commands import TINY_TRAIN, argv

from fastinit.progress import Progress


def test_off_a_terminal_heartbeats_and_a_result_line():
    out = io.StringIO()  # not a terminal
    p = Progress(30, "train he", "it", every=0.0, stream=out)
    for _ in range(3):
        p.update(10, loss="0.5")
    p.close("complete, 30 it")
    lines = out.getvalue().splitlines()
    assert lines[:3] == [f"train he: {n}/30 it, loss 0.5 (0 s)" for n in (10, 20, 30)]
    assert lines[3].startswith("train he: complete, 30 it, ") and lines[3].endswith(" s")


def test_heartbeat_waits_for_its_interval_and_disabled_prints_nothing():
    out = io.StringIO()
    p = Progress(100, "x", every=3600.0, stream=out)
    p.update(50)
    p.close()
    assert out.getvalue() == ""
    quiet = io.StringIO()
    q = Progress(10, "x", enabled=False, every=0.0, stream=quiet)
    q.update(10)
    q.close("done")
    assert quiet.getvalue() == ""


def test_cli_train_off_a_terminal_writes_one_line_per_run(tmp_path, capsys):
    from fastinit.cli import main

    tiny = dict(iterations=20, **TINY_TRAIN)
    code = main(
        argv("train", init=("he", "xavier"), eval_every=10, **tiny, no_plot=True, out=tmp_path / "t.h5")
    )
    err = capsys.readouterr().err
    assert code == 0
    runs = [ln for ln in err.splitlines() if ln.startswith("train ")]
    assert [ln.split(":")[0] for ln in runs] == ["train he", "train xavier"], err
    assert all("complete, 20 it, loss " in ln and "acc " in ln for ln in runs), err
    assert main(argv("train", q=True, **tiny, out=tmp_path / "q.h5")) == 0
    assert capsys.readouterr().err == ""
