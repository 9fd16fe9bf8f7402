"""Stop signals that unwind a command like Ctrl-C, held back while stopping would do damage.

Inside :func:`stop_signals_raise`, SIGINT raises ``KeyboardInterrupt`` and SIGTERM and SIGHUP
(a batch scheduler's or ``timeout``'s stop) raise :class:`Terminated`, a ``KeyboardInterrupt``:
the code that runs unwinds as it does on Ctrl-C (finished runs are kept, the current one is
marked interrupted, temp and lock files are removed) and the command exits with 128 + the
signal (:func:`exit_status`).

Two moments must not be interrupted, and there the signal is held back and sent again a
moment later (every ``DELIVER_AGAIN_S`` seconds until it can land):

- while the main thread holds Numba's compiler lock. Numba loads and writes its on-disk
  cache under that lock (an index file, then a data file); stopped in between, the index
  points at stale machine code and the next process that loads it crashes. The lock is
  watched with Numba's documented event API (``numba.core.event``, the built-in
  ``"numba:compiler_lock"`` event, broadcast when the lock is taken and released), not by
  looking for Numba's private files on the stack. The lock is also held while Numba
  compiles, so a stop that lands then waits for that compilation (seconds from a cold
  cache). Other threads need no watch: Python runs signal handlers in the main thread
  only, and fastinit's background compile thread is not a daemon, so the interpreter lets
  it finish before the process exits;
- while a module is imported (Numba, h5py, matplotlib are imported when a command needs
  them): an exception raised in a module's top-level code may come out changed (Numba's C
  extensions turn it into an ImportError, which would end the command with a traceback or be
  swallowed by a caller; a class body's ``__set_name__`` wraps it in a RuntimeError). The
  import system's frames (``<frozen importlib._bootstrap>``) on the interrupted stack tell;
- inside a finalizer (``__del__``) or a weakref callback, where Python prints an exception
  as "Exception ignored" and carries on: the stop would be lost.
"""

import os
import signal
import threading
from contextlib import contextmanager

__all__ = [
    "STOP_SIGNALS",
    "DELIVER_AGAIN_S",
    "Terminated",
    "stop_signals_raise",
    "numba_compiles_hold_stops",
    "exit_status",
    "ignore_stop_signals",
]

#: The signals that stop a command: Ctrl-C, and SIGTERM and SIGHUP where the platform has them.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
#: Seconds after which a held-back stop signal is sent again.
DELIVER_AGAIN_S = 0.05


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it unwinds like Ctrl-C.

    Parameters
    ----------
    signum : int
        The signal's number.

    Attributes
    ----------
    signum : int
        The signal's number; the command exits with 128 + `signum`.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(exc):
    """The exit status of a command stopped by a signal: 128 + the signal's number.

    Parameters
    ----------
    exc : KeyboardInterrupt
        What the stop raised: a :class:`Terminated`, or a plain ``KeyboardInterrupt`` (SIGINT).

    Returns
    -------
    int
        143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C.
    """
    return 128 + getattr(exc, "signum", signal.SIGINT)


class _State:
    numba_lock_depth = 0  # how deep the main thread is in Numba's compiler lock (it is reentrant)
    deferred = []  # timers that send a held-back stop signal again (cancelled on leaving)


def _in_finalizer(frame):
    """Whether an exception raised at ``frame`` would be printed and lost: a finalizer or a
    weakref callback."""
    return frame is not None and (
        frame.f_code.co_name == "__del__" or frame.f_code.co_filename.endswith("weakref.py")
    )


def _importing(frame):
    """Whether ``frame`` runs inside an import: the import system's frames
    (``<frozen importlib._bootstrap>``) are below it on the stack. An exception raised in a
    module's top-level code may come out changed (a class body's ``__set_name__`` wraps it in
    a RuntimeError, a C extension's import in an ImportError that a caller may swallow)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_stop_signal(signum, frame):
    if _State.numba_lock_depth > 0 or _importing(frame) or _in_finalizer(frame):  # again in a moment
        timer = threading.Timer(DELIVER_AGAIN_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        _State.deferred.append(timer)
        timer.start()
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextmanager
def stop_signals_raise():
    """Make the stop signals raise for a ``with`` block (held back where that would do damage).

    SIGINT raises ``KeyboardInterrupt``, SIGTERM and SIGHUP :class:`Terminated`; inside a
    finalizer, during an import, and inside :func:`numba_compiles_hold_stops` while the main
    thread holds Numba's compiler lock, the signal is held back and sent again a moment later. On
    leaving, held-back signals are dropped (the block has nothing left to stop) and the
    previous handlers come back. Handlers can only be set in the main thread: elsewhere,
    and for a signal the platform refuses, nothing changes.

    Yields
    ------
    None
        Nothing; the handlers are in place inside the block.

    Raises
    ------
    KeyboardInterrupt
        Inside the block, when a stop signal lands (a :class:`Terminated` for SIGTERM and
        SIGHUP).
    """
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, _on_stop_signal)
            except (ValueError, OSError):
                pass
        yield
    finally:
        # Held-back signals are dropped: ignored while their timers stop, since a timer that
        # has already woken still sends its signal, which must not meet the previous handlers.
        try:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            while _State.deferred:
                timer = _State.deferred.pop()
                timer.cancel()
                timer.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextmanager
def numba_compiles_hold_stops():
    """Hold stop signals back while the main thread holds Numba's compiler lock, for a block.

    Numba loads and writes its on-disk cache under that lock; a stop signal that lands then
    is sent again once the lock is released (see the module docstring). Listens to the
    lock's ``"numba:compiler_lock"`` events (``numba.core.event``), which imports Numba (a few
    tenths of a second; a stop then waits for the import, as during any import): enter it
    where Numba may compile, inside :func:`stop_signals_raise`.

    Yields
    ------
    None
        Nothing; the lock is watched inside the block.
    """
    from numba.core import event  # a stop during the import is held back like any import's

    class Watch(event.Listener):
        def on_start(self, ev):  # broadcast just before the lock is taken
            if threading.current_thread() is threading.main_thread():
                _State.numba_lock_depth += 1

        def on_end(self, ev):  # broadcast just after it is released
            if threading.current_thread() is threading.main_thread():
                _State.numba_lock_depth -= 1

    watch = Watch()
    event.register("numba:compiler_lock", watch)
    try:
        yield
    finally:
        event.unregister("numba:compiler_lock", watch)
        _State.numba_lock_depth = 0


def ignore_stop_signals():
    """Ignore every stop signal from now on (a process that was stopped and is exiting)."""
    for sig in STOP_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
