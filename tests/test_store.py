"""The HDF5 store: atomic updates, other groups kept, appendable datasets, clear errors."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from fastinit import __version__
from fastinit.show import describe
from fastinit.store import (
    StoreError,
    append,
    create_appendable,
    mark_interrupted,
    open_read,
    open_results,
    replace_group,
)


def _leftovers(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_round_trip_and_root_attrs(tmp_path):
    path = tmp_path / "r.h5"
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    with open_results(path, command_line="fastinit test") as f:
        g = replace_group(f, "/a/b", attrs={"seed": 3, "inits": ["std=1", "xavier"]})
        g.create_dataset("x", data=data)
    with open_read(path) as f:
        np.testing.assert_array_equal(f["/a/b/x"][()], data)
        assert f["/a/b"].attrs["seed"] == 3
        assert list(f["/a/b"].attrs["inits"]) == ["std=1", "xavier"]
        assert f["/a/b"].attrs["status"] == "complete"
        assert f.attrs["fastinit_version"] == __version__
        assert f.attrs["command_line"] == "fastinit test"
        assert f.attrs["created_utc"].endswith("Z")
    assert _leftovers(tmp_path) == []


def test_other_groups_kept_and_creation_time_kept(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path, command_line="first") as f:
        replace_group(f, "/one").create_dataset("v", data=[1.0])
        replace_group(f, "/two").create_dataset("v", data=[2.0])
    with h5py.File(path, "r") as f:
        created = f.attrs["created_utc"]
    # Simulate an older file so a changed creation time would show.
    with h5py.File(path, "r+") as f:
        f.attrs["created_utc"] = "2000-01-01T00:00:00Z"
    with open_results(path, command_line="second") as f:
        replace_group(f, "/two").create_dataset("v", data=[20.0, 21.0])
    with open_read(path) as f:
        assert f["/one/v"][()].tolist() == [1.0]
        assert f["/two/v"][()].tolist() == [20.0, 21.0]
        assert f.attrs["created_utc"] == "2000-01-01T00:00:00Z"
        assert f.attrs["command_line"] == "second"
    assert created.endswith("Z")


def test_failure_mid_write_leaves_original_intact(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path, command_line="good") as f:
        replace_group(f, "/keep").create_dataset("v", data=np.ones(5))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with open_results(path, command_line="bad") as f:
            del f["/keep"]
            replace_group(f, "/new").create_dataset("v", data=np.zeros(1000))
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failure_on_new_file_leaves_nothing(tmp_path):
    path = tmp_path / "new.h5"
    with pytest.raises(ValueError):
        with open_results(path) as f:
            replace_group(f, "/g")
            raise ValueError("bad input")
    assert os.listdir(tmp_path) == []


def test_interrupted_run_is_committed_and_readable(tmp_path):
    path = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        with open_results(path) as f:
            g = replace_group(f, "/train/run")
            ds = create_appendable(g, "loss", (), "float32")
            for i in range(7):
                append(ds, np.float32(i))
            other = replace_group(f, "/train/other")
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                mark_interrupted(other, "stopped at step 7")
                raise
    with open_read(path) as f:
        assert f["/train/run/loss"][()].tolist() == list(range(7))
        assert f["/train/run"].attrs["status"] == "interrupted"
        assert f["/train/other"].attrs["interrupted_reason"] == "stopped at step 7"
    assert _leftovers(tmp_path) == []


def test_appendable_streams_rows(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path) as f:
        ds = create_appendable(replace_group(f, "/g"), "acts", (6, 4), "float32", attrs={"unit": "x"})
        assert ds.shape == (0, 6, 4)
        assert ds.chunks is not None and ds.compression == "gzip"
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(5, 6, 4)).astype(np.float32)
        assert append(ds, rows[:2]) == 2
        assert append(ds, rows[2]) == 3
        assert append(ds, rows[3:]) == 5
        with pytest.raises(ValueError, match="each row must have shape"):
            append(ds, np.zeros((1, 5, 4)))
    with open_read(path) as f:
        np.testing.assert_array_equal(f["/g/acts"][()], rows)
        assert f["/g/acts"].maxshape == (None, 6, 4)


def test_big_rows_get_bounded_chunks(tmp_path):
    with open_results(tmp_path / "r.h5") as f:
        ds = create_appendable(f, "big", (3000, 1000), "float64")
        assert np.prod(ds.chunks) * 8 <= 1 << 20


def test_describe_lists_structure_and_small_values(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path, command_line="fastinit x") as f:
        g = replace_group(f, "/h/s/xavier", attrs={"init": "xavier"})
        g.create_dataset("mean", data=np.array([0.5, 0.4], dtype=np.float32))
        g.create_dataset("big", data=np.zeros((30, 30)))
    info = describe(path)
    assert info.attrs["command_line"] == "fastinit x"
    paths = [n.path for n in info.nodes]
    assert paths == ["/h", "/h/s", "/h/s/xavier", "/h/s/xavier/big", "/h/s/xavier/mean"]
    mean = info.node("/h/s/xavier/mean")
    assert mean.kind == "dataset" and mean.shape == (2,) and mean.dtype == "float32"
    np.testing.assert_allclose(mean.value, [0.5, 0.4])
    assert info.node("/h/s/xavier/big").value is None
    assert info.node("/h/s/xavier").attrs["init"] == "xavier"
    assert [n.name for n in info.children("/h/s/xavier")] == ["big", "mean"]


@pytest.mark.parametrize("reader", [describe, lambda p: open_read(p).__enter__()])
def test_clear_errors_for_bad_files(tmp_path, reader):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        reader(text)
    with pytest.raises(StoreError, match="no such file"):
        reader(tmp_path / "missing.h5")
    with pytest.raises(StoreError, match="directory"):
        reader(tmp_path)


def test_refuses_to_overwrite_non_hdf5(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("precious")
    with pytest.raises(StoreError, match="refusing to overwrite"):
        with open_results(text):
            pass
    assert text.read_text() == "precious"
    with pytest.raises(StoreError, match="does not exist"):
        with open_results(tmp_path / "nowhere" / "r.h5"):
            pass
    with pytest.raises(StoreError, match="is a directory"):
        with open_results(tmp_path):
            pass
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path) as f:
        f.create_dataset("x", data=np.arange(10000.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match=r"r\.h5"):
        describe(path)


def test_replace_group_rejects_empty_path(tmp_path):
    with pytest.raises(ValueError, match="group path"):
        with open_results(tmp_path / "r.h5") as f:
            replace_group(f, "/")


def test_format_info_tables_and_series(tmp_path):
    from fastinit.show import format_info

    path = tmp_path / "r.h5"
    with open_results(path, command_line="fastinit x") as f:
        for name, scale in (("a", 1.0), ("b", 2.0)):
            g = replace_group(f, f"/exp/{name}", attrs={"layers": 3, "note": "x" * 200})
            g.create_dataset("mean", data=scale * np.array([0.1, 0.2, 0.3]))
            g.create_dataset("std", data=scale * np.array([1.0, 2.0, 3.0]))
        t = replace_group(f, "/run")
        t.create_dataset("step", data=np.array([0, 10]))
        t.create_dataset("acc", data=np.array([0.5, 0.75]))
        t.create_dataset("case", data=np.array(["first case", "second"], dtype=h5py.string_dtype()))
        loss = create_appendable(t, "loss", (), "float64")
        append(loss, np.array([3.0, np.nan, 1.5, 2.0]))
    text = format_info(describe(path))
    lines = text.splitlines()
    assert "/exp/*  per-layer" in text and "/run  short datasets side by side" in text
    header = lines.index(next(line for line in lines if line.split()[:2] == ["group", "layer"]))
    assert lines[header].split() == ["group", "layer", "mean", "std"]
    assert lines[header + 4].split() == ["b", "1", "0.2", "2"]
    assert "mean, std  (3,) each  (table below)" in text
    assert "first 3, last 2, min 1.5, max 3, 1 NaN/Inf" in text
    assert "x" * 60 not in text and "..." in text  # long attrs are cut
    assert "x" * 200 in format_info(describe(path), all_attrs=True)
    run_table = lines[lines.index("/run  short datasets side by side") + 1:]
    assert run_table[0].split() == ["index", "case", "acc", "step"]
    assert run_table[1].split() == ["0", "first", "case", "0.5", "0"]
    assert run_table[2].split() == ["1", "second", "0.75", "10"]
    with pytest.raises(StoreError, match="has no group /nope; top-level groups: /exp, /run"):
        format_info(describe(path), "/nope")


def test_update_keeps_mode_and_symlink(tmp_path):
    real = tmp_path / "real.h5"
    with open_results(real) as f:
        replace_group(f, "/a")
    os.chmod(real, 0o600)
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    with open_results(link) as f:
        replace_group(f, "/b")
    assert link.is_symlink()
    assert os.stat(real).st_mode & 0o777 == 0o600
    with open_read(real) as f:
        assert sorted(f) == ["a", "b"]


@pytest.mark.skipif(os.name != "posix", reason="advisory locks are POSIX only")
def test_concurrent_update_of_one_file_is_refused_not_lost(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path, command_line="fastinit first") as f:
        replace_group(f, "/first")
        with pytest.raises(StoreError, match=r"being updated by another fastinit process \(pid \d+: fastinit first\)"):
            with open_results(path, command_line="fastinit second", wait=0.3) as g:
                replace_group(g, "/second")
        replace_group(f, "/first_again")
    with open_read(path) as f:
        assert sorted(f) == ["first", "first_again"]
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]  # no lock or temp file left
    with open_results(path, wait=0) as f:  # free again
        replace_group(f, "/third")


@pytest.mark.skipif(os.name != "posix", reason="advisory locks are POSIX only")
def test_temp_copies_of_killed_runs_are_cleaned_up(tmp_path):
    path = tmp_path / "r.h5"
    stale = tmp_path / ".r.h5.99999.deadbeef.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.h5.1.cafe.tmp"  # belongs to another results file: left alone
    other.write_bytes(b"x")
    with open_results(path) as f:
        replace_group(f, "/a")
    assert sorted(os.listdir(tmp_path)) == [".other.h5.1.cafe.tmp", "r.h5"]


def test_disk_full_while_writing_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    """An OS error while the update is written (here ENOSPC after 1000 bytes) is a
    ``StoreError``; the old file stays byte for byte and no temp file is left."""
    import errno

    import fastinit.store as store

    out = tmp_path / "r.h5"
    with open_results(out) as f:
        f.create_dataset("old", data=np.arange(10))
    before = out.read_bytes()
    real_write = os.write
    written = {"n": 0}

    def write_until_full(fd, data):
        if written["n"] + len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(store.os, "write", write_until_full)
    with pytest.raises(StoreError, match="No space left on device"):
        with open_results(out) as f:
            f.create_dataset("new", data=np.zeros(100_000))
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    """The same on a real 200 KiB tmpfs, end to end through the CLI (skipped where mounting is
    not allowed): exit 1, one line, old file intact, no temp file, no crash."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mnt / "h.h5"
        small = [sys.executable, "-m", "fastinit", "histogram", "--units", "8", "--samples", "16", "--layers", "2",
                 "--no-plot", "-q", "--out", str(out)]
        assert subprocess.run(small, capture_output=True).returncode == 0
        before = out.read_bytes()
        big = small[:4] + ["--units", "100", "--samples", "1000", "--no-plot", "-q", "--out", str(out)]
        proc = subprocess.run(big, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "No space left on device" in proc.stderr, proc.stderr
        assert out.read_bytes() == before
        assert sorted(p.name for p in mnt.iterdir()) == ["h.h5"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_files_record_machine_and_versions_and_show_prints_them_with_units(tmp_path):
    from fastinit.show import format_info
    from fastinit.store import label

    path = tmp_path / "r.h5"
    with open_results(path) as f:
        g = replace_group(f, "/run")
        label(g.create_dataset("acc", data=np.array([0.5, 0.9])), "fraction (0-1)", "test accuracy per epoch")
    with open_read(path) as f:
        for key in ("python_version", "numpy_version", "numba_version", "numba_cuda_version", "h5py_version",
                    "cpu_model", "cpu_isa", "code_isa", "cores", "threads"):
            assert key in f.attrs, key
    text = format_info(describe(path))
    assert "written on:" in text and "NumPy" in text and "Numba" in text
    assert "[fraction (0-1)] test accuracy per epoch" in text
