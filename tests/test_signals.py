"""Stop signals (``fastinit.signals``): held back while Numba holds its compiler lock (where it
writes its on-disk cache) and inside finalizers, delivered as soon as that is over.

The commands' own behaviour on SIGINT, SIGTERM and SIGHUP, sent for real, is tested in
``tests/test_cli.py``; here a real process is stopped at the moment Numba has compiled a
function and is about to write it to its cache.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastinit import signals

# Stops itself with SIGTERM from Numba's own "numba:compile" end event: the function is compiled
# and Numba writes it to its cache next, still holding the compiler lock. With "load", compiles
# (or loads) the function and prints its cache hits.
_SCRIPT = textwrap.dedent(
    """
    import contextlib, os, signal, sys, time

    import numba
    from numba.core import event

    from fastinit.signals import exit_status, numba_compiles_hold_stops, stop_signals_raise

    @numba.njit(cache=True)
    def add_one(x):
        return x + 1

    class StopAfterCompiling(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here, in the main thread, inside Numba's lock

    if sys.argv[1] == "load":
        assert add_one(1) == 2
        print(sum(add_one.stats.cache_hits.values()))
        sys.exit()
    event.register("numba:compile", StopAfterCompiling())
    hold = numba_compiles_hold_stops if sys.argv[1] == "hold" else contextlib.nullcontext
    try:
        with stop_signals_raise(), hold():
            add_one(1)
            time.sleep(30)
        print("not stopped")
    except KeyboardInterrupt as exc:
        print("stopped", exit_status(exc))
    """
)


def _python(tmp_path, mode):
    path = tmp_path / "script.py"  # cache=True needs a function defined in a file (the same one)
    if not path.exists():
        path.write_text(_SCRIPT)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, str(path), mode], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM sent to itself is POSIX")
@pytest.mark.parametrize("hold", ["hold", "no-hold"])
def test_a_stop_while_numba_writes_its_cache_waits_until_the_cache_is_written(tmp_path, hold):
    """With the hold, the stop lands once Numba released its lock: the cache was written and the
    next process loads from it. Without it (the control), the stop lands inside Numba and no
    cache is written: the test can tell the two apart."""
    stopped = _python(tmp_path, hold)
    assert stopped.stdout.strip() == "stopped 143", stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stderr
    cached = sorted(p.suffix for p in (tmp_path / "cache").rglob("*") if p.is_file())
    if hold == "no-hold":
        assert ".nbc" not in cached, cached
        return
    assert ".nbi" in cached and ".nbc" in cached, cached
    loaded = _python(tmp_path, "load")
    assert loaded.returncode == 0 and loaded.stdout.strip() == "1", loaded.stdout + loaded.stderr


def _wait_for(sent):
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:  # the timer thread sends it (later on a busy machine)
        time.sleep(0.02)


def test_a_stop_inside_a_finalizer_is_delivered_again_after_it(monkeypatch):
    """Raised in a finalizer, the stop would be printed ("Exception ignored") and lost: the
    handler holds it back and sends it again a moment later; elsewhere it raises at once."""
    sent = []
    monkeypatch.setattr(signals.os, "kill", lambda pid, sig: sent.append(sig))
    with pytest.raises(signals.Terminated):
        signals._on_stop_signal(signal.SIGTERM, sys._getframe())
    with pytest.raises(KeyboardInterrupt):
        signals._on_stop_signal(signal.SIGINT, sys._getframe())

    class Finalized:
        def __del__(self):  # an exception raised here would be printed and lost
            signals._on_stop_signal(signal.SIGHUP, sys._getframe())

    Finalized()
    _wait_for(sent)
    assert sent == [signal.SIGHUP]


def test_the_hold_counts_the_main_threads_holds_of_numbas_compiler_lock(monkeypatch):
    """Numba's compiler lock, taken by a compile in the main thread, holds a stop back; taken
    in another thread, it does not (that thread finishes before the process exits); the
    count is back to 0 after each compile and outside the block."""
    import threading

    import numba

    seen = []

    def on_stop(signum, frame):  # what the handler sees at the moment Numba's lock is taken
        seen.append((threading.current_thread().name, signals._State.numba_lock_depth))

    from numba.core import event

    class Probe(event.Listener):
        def on_start(self, ev):
            on_stop(None, None)

        def on_end(self, ev):
            pass

    probe = Probe()
    with event.install_listener("numba:compile", probe), signals.numba_compiles_hold_stops():
        numba.njit(lambda x: x * 2)(3)
        assert signals._State.numba_lock_depth == 0
        worker = threading.Thread(target=lambda: numba.njit(lambda x: x * 3)(3), name="worker")
        worker.start()
        worker.join()
    assert signals._State.numba_lock_depth == 0
    assert seen[0] == ("MainThread", 1) and ("worker", 0) in seen, seen
    sent = []
    monkeypatch.setattr(signals.os, "kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setattr(signals._State, "numba_lock_depth", 1)
    signals._on_stop_signal(signal.SIGTERM, sys._getframe())  # held back: no exception
    _wait_for(sent)
    assert sent == [signal.SIGTERM]


def test_a_stop_during_an_import_waits_for_the_import(monkeypatch, tmp_path):
    """Raised in a module's top-level code, a KeyboardInterrupt can come out changed (an
    ImportError from a C extension's import, a RuntimeError from a class body's
    ``__set_name__``: matplotlib's, once, in a CLI test): held back until the import ends."""
    sent = []
    monkeypatch.setattr(signals.os, "kill", lambda pid, sig: sent.append(sig))
    (tmp_path / "stopped_while_imported.py").write_text(
        "import signal, sys\n"
        "from fastinit import signals\n"
        "signals._on_stop_signal(signal.SIGINT, sys._getframe())  # as if Ctrl-C landed here\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import stopped_while_imported  # noqa: F401  (held back: the import completes)
    except KeyboardInterrupt:
        pytest.fail("the stop landed inside the import")

    _wait_for(sent)
    assert sent == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):  # outside an import it lands at once
        signals._on_stop_signal(signal.SIGINT, sys._getframe())
