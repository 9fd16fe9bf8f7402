"""Progress of long work, on a terminal and off it (logs, CI, ``nohup``).

``Progress(total, desc, unit)`` shows a tqdm bar when stderr is a terminal.
Off a terminal it writes plain lines to stderr instead: a heartbeat at least
every ``every`` seconds (``desc: 1200/2000 it, loss 0.31 (10 s)``) and, from
``close(headline)``, one line with the result (``train he: 2000 it, loss
0.225, acc 93.8%, 2.7 s``). ``enabled=False`` (the CLI's ``-q``) shows nothing.
"""

import sys
import time

__all__ = ["Progress", "HEARTBEAT_S"]

HEARTBEAT_S = 10.0


class Progress:
    """A progress bar or heartbeat lines for `total` steps of `unit`.

    A tqdm bar when `stream` is a terminal; off a terminal, a plain line at least
    every `every` seconds, and one line with the result from `close`.

    Parameters
    ----------
    total : int
        The number of steps expected.
    desc : str
        What is progressing; starts every line (``desc: ...``).
    unit : str, default 'it'
        The unit of a step.
    enabled : bool, default True
        False shows nothing (the CLI's ``-q``).
    every : float, default HEARTBEAT_S
        Seconds between heartbeat lines off a terminal.
    stream : file-like, optional
        Where to write; ``sys.stderr`` when None.
    """

    def __init__(self, total, desc, unit="it", *, enabled=True, every=HEARTBEAT_S, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.n = 0
        self.postfix = {}
        self.start = self.last = time.monotonic()
        self.bar = None
        if self.enabled and _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                dynamic_ncols=True,
                mininterval=0.5,
                leave=False,
                file=self.stream,
            )

    def update(self, n=1, **postfix):
        """Record `n` more steps done.

        Parameters
        ----------
        n : int, default 1
            Steps done since the last call.
        **postfix : str or number
            Shown with the progress, e.g. ``loss="0.31"``; kept until replaced.
        """
        self.n += n
        if postfix:
            self.postfix = postfix
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif self.enabled:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
                self._line(f"{self.n}/{self.total} {self.unit}{extra} ({now - self.start:.0f} s)")

    def close(self, headline=None):
        """End the bar, and write the result line.

        Parameters
        ----------
        headline : str, optional
            When given (and enabled), write ``desc: headline, <elapsed> s``.
        """
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if headline is not None and self.enabled:
            self._line(f"{headline}, {time.monotonic() - self.start:.1f} s")

    def _line(self, text):
        print(f"{self.desc}: {text}", file=self.stream, flush=True)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
