"""MNIST loading: the shipped copy, its checksums, and every bad-data path."""

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from fastinit import data
from fastinit.data import FILES, SHA256, DataError, load_mnist, read_idx


def idx_bytes(array, magic=None):
    """Encode a uint8 array as IDX bytes (magic 0x800 + ndim unless given)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x800 + array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_set(directory, n_train=12, n_test=5, rows=4, cols=3, seed=0, gz=True, **override):
    """Write a small valid data set into ``directory``; ``override`` maps role -> raw bytes."""
    rng = np.random.default_rng(seed)
    content = {
        "train_images": idx_bytes(rng.integers(0, 256, (n_train, rows, cols))),
        "train_labels": idx_bytes(rng.integers(0, 10, n_train)),
        "test_images": idx_bytes(rng.integers(0, 256, (n_test, rows, cols))),
        "test_labels": idx_bytes(rng.integers(0, 10, n_test)),
    }
    content.update(override)
    directory.mkdir(parents=True, exist_ok=True)
    for role, payload in content.items():
        name = FILES[role] if gz else FILES[role][: -len(".gz")]
        (directory / name).write_bytes(gzip.compress(payload) if gz else payload)
    return content


# --- the shipped copy --------------------------------------------------------


def test_shipped_files_match_their_checksums():
    digests = data.verify_shipped()
    assert digests == SHA256
    for name in FILES.values():
        raw = gzip.decompress((data.shipped_dir() / name).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == SHA256[name]


def test_shipped_readme_carries_attribution_and_checksums():
    text = (data.shipped_dir() / "README.md").read_text()
    assert "CC BY-SA 3.0" in text and "LeCun" in text and "Cortes" in text
    for digest in SHA256.values():
        assert digest in text


def test_load_mnist_shapes_ranges_and_labels(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    m = load_mnist()
    assert m.train_images.shape == (60000, 784) and m.test_images.shape == (10000, 784)
    assert m.train_labels.shape == (60000,) and m.test_labels.shape == (10000,)
    assert m.train_images.dtype == np.float32 and m.train_labels.dtype == np.int64
    assert m.image_shape == (28, 28) and m.n_features == 784
    assert m.train_images.flags.c_contiguous
    assert 0.0 <= m.train_images.min() and m.train_images.max() == pytest.approx(1.0)
    # Known statistics of MNIST: pixel mean 0.1307, std 0.3081; first labels 5 0 4 1 9.
    assert m.train_images.mean() == pytest.approx(0.1307, abs=1e-4)
    assert m.train_images.std() == pytest.approx(0.3081, abs=1e-4)
    assert m.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(m.test_labels, minlength=10).sum() == 10000
    assert set(np.unique(m.train_labels).tolist()) == set(range(10))


def test_load_mnist_is_cached_and_read_only(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    a, b = load_mnist(), load_mnist()
    assert a.train_images is b.train_images
    with pytest.raises(ValueError):
        a.train_images[0, 0] = 1.0


def test_float64_on_request(tmp_path):
    write_set(tmp_path)
    m = load_mnist(tmp_path, dtype=np.float64)
    assert m.train_images.dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        load_mnist(tmp_path, dtype=np.int32)


# --- other directories ---------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_data_dir_reads_same_format(tmp_path, gz):
    content = write_set(tmp_path, gz=gz)
    m = load_mnist(tmp_path)
    assert m.train_images.shape == (12, 12) and m.test_images.shape == (5, 12)
    assert m.image_shape == (4, 3)
    expected = np.frombuffer(content["train_images"], np.uint8, offset=16).reshape(12, 12) / 255.0
    np.testing.assert_allclose(m.train_images, expected, rtol=1e-6)
    np.testing.assert_array_equal(m.test_labels, np.frombuffer(content["test_labels"], np.uint8, offset=8))
    assert m.source == str(tmp_path)


def test_env_var_selects_data_dir(tmp_path, monkeypatch):
    write_set(tmp_path, n_train=7)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert load_mnist().train_images.shape[0] == 7


def test_cache_sees_changed_files(tmp_path):
    write_set(tmp_path, n_train=7)
    assert load_mnist(tmp_path).train_images.shape[0] == 7
    shutil.rmtree(tmp_path)
    write_set(tmp_path, n_train=9)
    assert load_mnist(tmp_path).train_images.shape[0] == 9


# --- every bad-data path ------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        load_mnist(tmp_path / "nope")


def test_missing_file_is_named(tmp_path):
    write_set(tmp_path)
    (tmp_path / FILES["test_labels"]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    write_set(tmp_path)
    path = tmp_path / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: truncated gzip"):
        load_mnist(tmp_path)


def test_corrupt_gzip(tmp_path):
    write_set(tmp_path)
    path = tmp_path / FILES["train_labels"]
    raw = bytearray(path.read_bytes())
    raw[12:20] = b"\xff" * 8  # damage the deflate stream, keep the gzip magic
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: (corrupt|truncated)"):
        load_mnist(tmp_path)


def test_not_a_gzip_file(tmp_path):
    write_set(tmp_path)
    (tmp_path / FILES["test_images"]).write_text("hello, not gzip")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: not a gzip file"):
        load_mnist(tmp_path)


def test_bad_magic_number(tmp_path):
    labels_as_images = idx_bytes(np.zeros(12, np.uint8))  # magic 0x801 where 0x803 is expected
    write_set(tmp_path, train_images=labels_as_images)
    with pytest.raises(DataError, match="bad IDX magic number 0x00000801, expected 0x00000803"):
        load_mnist(tmp_path)


def test_truncated_header(tmp_path):
    write_set(tmp_path, test_labels=b"\x00\x00\x08")
    with pytest.raises(DataError, match="t10k-labels.*truncated IDX header"):
        load_mnist(tmp_path)


def test_truncated_idx_data(tmp_path):
    good = idx_bytes(np.zeros((5, 4, 3), np.uint8))
    write_set(tmp_path, test_images=good[:-7])
    with pytest.raises(DataError, match=r"t10k-images.*truncated IDX data"):
        load_mnist(tmp_path)


def test_trailing_bytes(tmp_path):
    write_set(tmp_path, train_labels=idx_bytes(np.zeros(12, np.uint8)) + b"\x00\x01")
    with pytest.raises(DataError, match="2 unexpected trailing bytes"):
        load_mnist(tmp_path)


def test_zero_dimension(tmp_path):
    write_set(tmp_path, train_images=(0x803).to_bytes(4, "big") + b"\x00" * 12)
    with pytest.raises(DataError, match="bad IDX dimensions"):
        load_mnist(tmp_path)


def test_label_count_mismatch(tmp_path):
    write_set(tmp_path, train_labels=idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match="11 labels but .*train-images.* has 12 images"):
        load_mnist(tmp_path)


def test_label_out_of_range(tmp_path):
    write_set(tmp_path, test_labels=idx_bytes(np.array([0, 1, 2, 3, 12], np.uint8)))
    with pytest.raises(DataError, match="label value 12 out of range"):
        load_mnist(tmp_path)


def test_train_test_image_shapes_differ(tmp_path):
    write_set(tmp_path, test_images=idx_bytes(np.zeros((5, 3, 3), np.uint8)))
    with pytest.raises(DataError, match=r"images are \(3, 3\)"):
        load_mnist(tmp_path)


def test_shipped_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    # A damaged "shipped" copy: valid IDX structure, wrong bytes.
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    write_set(tmp_path)
    monkeypatch.setattr(data, "shipped_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist()
    with pytest.raises(DataError, match="checksum mismatch"):
        data.verify_shipped()


def test_read_idx_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        read_idx(tmp_path / "x", "pixels")


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)
