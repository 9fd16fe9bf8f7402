"""MNIST (and same-format data sets) from IDX files.

The four MNIST files ship inside the package (``fastinit/data/mnist/``, CC BY-SA
3.0, see the README there), so everything works offline. ``load_mnist()``
reads them with its own IDX parser, checks the decompressed bytes of the
shipped copy against their SHA-256 sums, and returns float images scaled to
[0, 1] and flattened, plus integer labels.

``load_mnist(data_dir=DIR)`` (CLI ``--data-dir``, environment variable
``FASTINIT_DATA_DIR``) reads the same four file names from another directory,
e.g. Fashion-MNIST, which has the same format. Their structure is validated
(magic numbers, dimensions, sizes, label range); there are no checksums to
check for files that are not the shipped copy.

Any missing, truncated or corrupt file raises ``DataError`` (a ``ValueError``)
naming the file and what is wrong. Decoded arrays are cached in memory only
(nothing is ever written next to the package).
"""

import functools
import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import FastinitError

__all__ = [
    "DataError",
    "MNIST",
    "FILES",
    "SHA256",
    "DATA_DIR_ENV",
    "shipped_dir",
    "read_idx",
    "load_mnist",
    "verify_shipped",
]

#: Environment variable naming a directory to read the four IDX files from.
DATA_DIR_ENV = "FASTINIT_DATA_DIR"

#: Role -> file name (the same names are looked up in any ``data_dir``).
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: SHA-256 of the *decompressed* shipped files (the original MNIST bytes).
SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension
N_CLASSES = 10


class DataError(FastinitError, ValueError):
    """A data file is missing, truncated, corrupt or not what it should be."""


@dataclass(frozen=True)
class MNIST:
    """A train/test split of images and labels.

    The arrays may be shared with an in-memory cache, so they are read-only; copy
    them before changing them.

    Parameters
    ----------
    train_images : ndarray, shape (n_train, rows*cols), float32 or float64
        Training images in [0, 1], flattened, C-contiguous.
    train_labels : ndarray, shape (n_train,), int64
        Training labels in 0..9.
    test_images : ndarray, shape (n_test, rows*cols), same dtype
        Test images in [0, 1].
    test_labels : ndarray, shape (n_test,), int64
        Test labels in 0..9.
    source : str
        Where the files came from (``"shipped MNIST"`` or the directory).
    image_shape : tuple of int
        ``(rows, cols)``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    image_shape: tuple

    @property
    def n_features(self):
        """The number of pixels per image, ``rows * cols`` (int)."""
        return self.train_images.shape[1]


def shipped_dir():
    """Locate the package directory holding the shipped MNIST files.

    Returns
    -------
    pathlib.Path
        ``fastinit/data/mnist`` inside the installed package.
    """
    return Path(str(resources.files("fastinit").joinpath("data", "mnist")))


def _read_bytes(path):
    """The decompressed bytes of ``path`` (.gz), or its raw bytes when not gzipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DataError(f"{path}: not a gzip file (corrupt or wrong file)")
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated gzip stream (the file was cut short)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def _parse_idx(data, path, magic, ndim):
    """Validate an IDX buffer and return its uint8 array of ``ndim`` dimensions."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, expected at least {header})")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: bad IDX magic number 0x{found:08x}, expected 0x{magic:08x} ({kind} file)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(d <= 0 for d in dims):
        raise DataError(f"{path}: bad IDX dimensions {dims}, all must be > 0")
    expected = header + int(np.prod(dims))
    if len(data) < expected:
        raise DataError(f"{path}: truncated IDX data ({len(data)} bytes, header {dims} needs {expected})")
    if len(data) > expected:
        raise DataError(f"{path}: {len(data) - expected} unexpected trailing bytes after the IDX data {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path, kind, sha256=None):
    """Read one IDX file (gzipped or not) into a uint8 array.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    kind : {'images', 'labels'}
        ``"images"`` (magic 0x803, a 3-D result) or ``"labels"`` (magic 0x801, 1-D).
    sha256 : str, optional
        When given, the hex SHA-256 the decompressed bytes must have.

    Returns
    -------
    ndarray, shape (n, rows, cols) or (n,), uint8
        A read-only view of the file's bytes.

    Raises
    ------
    DataError
        Naming `path`, for a missing, truncated or corrupt file, a bad magic number or
        dimensions, trailing bytes, or a checksum mismatch.
    ValueError
        For another `kind`.
    """
    if kind not in ("images", "labels"):
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}")
    data = _read_bytes(path)
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise DataError(
                f"{path}: checksum mismatch (SHA-256 of the decompressed bytes is {digest}, "
                f"expected {sha256}); the shipped copy is damaged, reinstall fastinit"
            )
    if kind == "images":
        return _parse_idx(data, path, IMAGES_MAGIC, 3)
    return _parse_idx(data, path, LABELS_MAGIC, 1)


def _file_key(path):
    """A cache key that changes when the file changes."""
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None, None)
    return (str(path), st.st_size, st.st_mtime_ns)


def _resolve(directory, name):
    """``directory/name``, or ``directory/name`` without .gz when only that exists."""
    path = Path(directory) / name
    if not path.exists():
        plain = path.with_suffix("")
        if plain.exists():
            return plain
    return path


@functools.lru_cache(maxsize=4)
def _load_cached(paths_and_keys, verify, dtype_name):
    paths = dict((role, Path(p)) for role, p, _ in paths_and_keys)
    arrays = {}
    for role, path in paths.items():
        kind = "images" if role.endswith("images") else "labels"
        digest = SHA256[FILES[role]] if verify else None
        arrays[role] = read_idx(path, kind, sha256=digest)

    for split in ("train", "test"):
        n_img = arrays[f"{split}_images"].shape[0]
        n_lab = arrays[f"{split}_labels"].shape[0]
        if n_img != n_lab:
            raise DataError(
                f"{paths[split + '_labels']}: {n_lab} labels but "
                f"{paths[split + '_images']} has {n_img} images"
            )
        labels = arrays[f"{split}_labels"]
        if labels.size and int(labels.max()) >= N_CLASSES:
            raise DataError(
                f"{paths[split + '_labels']}: label value {int(labels.max())} out of range 0..{N_CLASSES - 1}"
            )
    shape = arrays["train_images"].shape[1:]
    if arrays["test_images"].shape[1:] != shape:
        raise DataError(
            f"{paths['test_images']}: images are {arrays['test_images'].shape[1:]} but "
            f"{paths['train_images']} has {shape}"
        )

    dtype = np.dtype(dtype_name)
    scale = dtype.type(1.0 / 255.0)
    out = {}
    for role, arr in arrays.items():
        if role.endswith("images"):
            x = arr.reshape(arr.shape[0], -1).astype(dtype)
            x *= scale
        else:
            x = arr.astype(np.int64)
        x.flags.writeable = False
        out[role] = x
    return out, tuple(int(s) for s in shape)


def load_mnist(data_dir=None, *, dtype=np.float32):
    """Load the train and test splits as an `MNIST` record.

    Images are (n, rows*cols) in [0, 1]. Results are cached in memory per
    directory, file stamps and dtype, and returned read-only.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        None reads ``$FASTINIT_DATA_DIR`` if set, else the shipped copy (whose
        decompressed bytes are checked against ``SHA256``); a path reads the four
        ``FILES`` names from there (``.gz`` or uncompressed), structure validated but
        no checksums.
    dtype : numpy.dtype, default numpy.float32
        float32 or float64, for the images; labels are always int64.

    Returns
    -------
    MNIST
        The two splits.

    Raises
    ------
    DataError
        For a missing directory or file, a truncated or corrupt file, a bad magic
        number, inconsistent sizes or labels outside 0..9.
    TypeError
        For a dtype other than float32/float64.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    verify = data_dir is None
    directory = shipped_dir() if verify else Path(data_dir).expanduser()
    if not verify and not directory.is_dir():
        raise DataError(f"{directory}: data directory not found (expected the four MNIST IDX files there)")
    keyed = tuple(
        (role, str(p), _file_key(p))
        for role, p in ((role, _resolve(directory, name)) for role, name in FILES.items())
    )
    arrays, shape = _load_cached(keyed, verify, dtype.name)
    return MNIST(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        source="shipped MNIST" if verify else str(directory),
        image_shape=shape,
    )


def verify_shipped():
    """Check every shipped file's decompressed SHA-256.

    Returns
    -------
    dict of str to str
        File name -> hex digest.

    Raises
    ------
    DataError
        On the first missing or mismatching file.
    """
    result = {}
    for name, digest in SHA256.items():
        path = shipped_dir() / name
        data = _read_bytes(path)
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise DataError(f"{path}: checksum mismatch (SHA-256 {found}, expected {digest})")
        result[name] = found
    return result
