"""The data cache sizes of this machine's cores, read at run time, for planning the products' blocks.

Compiled code never reads them: Numba's on-disk cache is shared by every machine that reads
the directory, so a size read while compiling would be frozen into code that another machine
then runs. The sizes are read in Python, once per process (`cache_sizes`), and turned into
block sizes that the compiled products take as arguments (``fastinit.kernels.cpu_products``).

Where they come from, first that answers: ``os.sysconf`` (``SC_LEVEL1_DCACHE_SIZE``,
``SC_LEVEL2_CACHE_SIZE``, where Python knows the names), Linux's
``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}``, then `DEFAULT_CACHE_SIZES`.
Sizes are those of one cache as the system reports it, not divided between the cores or
hardware threads that share it.
"""

import functools
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["CacheSizes", "DEFAULT_CACHE_SIZES", "SYSFS_CACHE_DIR", "read_cache_sizes", "cache_sizes"]

#: (L1d, L2) bytes when the system says nothing: the smallest of current x86 cores
#: (AMD Zen 3: 32 KiB L1d, 512 KiB L2), so blocks planned from them fit everywhere.
DEFAULT_CACHE_SIZES = (32 * 1024, 512 * 1024)
#: Where Linux describes the first CPU's caches.
SYSFS_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"

_SYSCONF_NAMES = ("SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL2_CACHE_SIZE")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class CacheSizes(NamedTuple):
    """A core's data cache sizes and where they were read.

    Parameters
    ----------
    l1d : int
        Level-1 data cache, bytes.
    l2 : int
        Level-2 cache, bytes.
    source : str
        ``'sysconf'``, ``'sysfs'`` or ``'default'``; two joined by ``'+'`` (e.g.
        ``'sysfs+default'``) when the levels came from different places.
    """

    l1d: int
    l2: int
    source: str


def _from_sysconf():
    """(L1d, L2) from ``os.sysconf``; None for a level it does not know or reports as 0."""
    sizes = []
    for name in _SYSCONF_NAMES:
        value = None
        if name in os.sysconf_names:
            try:
                value = os.sysconf(name)
            except (OSError, ValueError):
                pass
        sizes.append(value if value and value > 0 else None)
    return tuple(sizes)


def _parse_size(text):
    """Bytes of a sysfs size such as ``'48K'``, ``'2048K'``, ``'1M'`` or ``'512'``."""
    text = text.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    return int(text[: len(text) - len(unit)]) * _UNITS[unit]


def _from_sysfs(folder):
    """(L1d, L2) from the ``index*`` folders of ``folder``; None for a level not described."""
    found = {}
    for index in sorted(Path(folder).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue  # an unreadable or odd entry: look at the others
        if kind in ("Data", "Unified") and level in (1, 2) and size > 0:
            found.setdefault(level, size)
    return found.get(1), found.get(2)


def read_cache_sizes(sysfs=SYSFS_CACHE_DIR):
    """Read the L1 data and L2 cache sizes of one core.

    Each level comes from ``os.sysconf`` when it answers, else from `sysfs`, else from
    `DEFAULT_CACHE_SIZES`.

    Parameters
    ----------
    sysfs : str or os.PathLike
        The folder holding ``index*/{level,type,size}`` (Linux's layout); a missing folder
        counts as no answer.

    Returns
    -------
    CacheSizes
        ``(l1d, l2, source)``, sizes in bytes.
    """
    answers = (("sysconf", _from_sysconf), ("sysfs", lambda: _from_sysfs(sysfs)))
    sizes, sources = [None, None], []
    for name, read in answers:
        if all(sizes):
            break
        got = read()
        for level, value in enumerate(got):
            if sizes[level] is None and value is not None:
                sizes[level] = value
                if name not in sources:
                    sources.append(name)
    for level, value in enumerate(sizes):
        if value is None:
            sizes[level] = DEFAULT_CACHE_SIZES[level]
            if "default" not in sources:
                sources.append("default")
    return CacheSizes(sizes[0], sizes[1], "+".join(sources))


@functools.lru_cache(maxsize=1)
def cache_sizes():
    """This machine's cache sizes, read once per process (see `read_cache_sizes`).

    Returns
    -------
    CacheSizes
        ``(l1d, l2, source)``, sizes in bytes.
    """
    return read_cache_sizes()
