"""The HDF5 store: a top file of links plus part files, atomic updates, other groups kept,
appendable datasets, old single-file results read and converted, clear errors."""

import os
import subprocess

import h5py
import numpy as np
import pytest
from commands import argv, fastinit_command

from fastinit import __version__
from fastinit.show import describe
from fastinit.store import (
    StoreError,
    append,
    copy_group,
    create_appendable,
    finish_group,
    mark_interrupted,
    open_read,
    open_results,
    parts_folder,
    replace_group,
)


def _leftovers(folder):
    """Temp and lock files in ``folder`` and its parts folders."""
    found = []
    for _root, _, files in os.walk(folder):
        found += [name for name in files if name.endswith((".tmp", ".lock"))]
    return found


def _parts(path):
    folder = parts_folder(path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


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
    run_table = lines[lines.index("/run  short datasets side by side") + 1 :]
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
        with pytest.raises(
            StoreError, match=r"being updated by another fastinit process \(pid \d+: fastinit first\)"
        ):
            with open_results(path, command_line="fastinit second", wait=0.3) as g:
                replace_group(g, "/second")
        replace_group(f, "/first_again")
    with open_read(path) as f:
        assert sorted(f) == ["first", "first_again"]
    assert sorted(os.listdir(tmp_path)) == ["r.h5", "r.h5.parts"] and _leftovers(tmp_path) == []
    with open_results(path, wait=0) as f:  # free again
        replace_group(f, "/third")


@pytest.mark.skipif(os.name != "posix", reason="advisory locks are POSIX only")
def test_temp_copies_of_killed_runs_are_cleaned_up(tmp_path):
    path = tmp_path / "r.h5"
    stale = tmp_path / ".r.h5.99999.deadbeef.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.h5.1.cafe.tmp"  # belongs to another results file: left alone
    other.write_bytes(b"x")
    parts = tmp_path / "r.h5.parts"
    parts.mkdir()
    (parts / ".a.0123abcd.h5.99999.deadbeef.tmp").write_bytes(b"half a part")
    (parts / "a.0123abcd.h5").write_bytes(b"a part finished, never linked: killed before the commit")
    (parts / "notes.txt").write_text("the user's own file: left alone")
    with open_results(path) as f:
        replace_group(f, "/a")
    assert sorted(os.listdir(tmp_path)) == [".other.h5.1.cafe.tmp", "r.h5", "r.h5.parts"]
    assert len(_parts(path)) == 2 and "notes.txt" in _parts(path)


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


def test_disk_full_on_a_real_small_filesystem(tmpfs):
    """The same on a real 200 KiB tmpfs, end to end through the CLI (skipped where mounting is
    not allowed): exit 1, one line, old file intact, no temp file, no crash."""
    mnt = tmpfs("tiny", "size=200k")
    out = mnt / "h.h5"
    small = fastinit_command(argv("histogram", units=8, samples=16, layers=2, no_plot=True, q=True, out=out))
    assert subprocess.run(small, capture_output=True).returncode == 0
    before, parts_before = out.read_bytes(), _parts(out)
    big = fastinit_command(argv("histogram", units=100, samples=1000, no_plot=True, q=True, out=out))
    proc = subprocess.run(big, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "No space left on device" in proc.stderr, proc.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in mnt.iterdir()) == ["h.h5", "h.h5.parts"] and _leftovers(mnt) == []
    assert _parts(out) == parts_before


def test_files_record_machine_and_versions_and_show_prints_them_with_units(tmp_path):
    from fastinit.show import format_info
    from fastinit.store import label

    path = tmp_path / "r.h5"
    with open_results(path) as f:
        g = replace_group(f, "/run")
        label(g.create_dataset("acc", data=np.array([0.5, 0.9])), "fraction (0-1)", "test accuracy per epoch")
    with open_read(path) as f:
        for key in (
            "python_version",
            "numpy_version",
            "numba_version",
            "numba_cuda_version",
            "h5py_version",
            "cpu_model",
            "cpu_isa",
            "code_isa",
            "cores",
            "threads",
        ):
            assert key in f.attrs, key
    text = format_info(describe(path))
    assert "written on:" in text and "NumPy" in text and "Numba" in text
    assert "[fraction (0-1)] test accuracy per epoch" in text


# --- the layout: a top file of external links plus one part file per group -------------------------


def _write(path, group, values, **kw):
    with open_results(path, **kw) as f:
        g = replace_group(f, group, attrs={"note": group})
        g.create_dataset("v", data=np.asarray(values, dtype=np.float64))


def test_each_group_is_a_part_file_linked_relatively_and_the_folder_can_move(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    folder.mkdir()
    path = folder / "fastinit.h5"
    _write(path, "/train/he", np.arange(5))
    _write(path, "/histogram/sigmoid/xavier", [1.0])
    with h5py.File(path, "r") as f:
        link = f["train"].get("he", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and link.path == "/train/he"
        assert link.filename.startswith("fastinit.h5.parts/") and not os.path.isabs(link.filename)
        assert f.attrs["fastinit_layout"] == 2
    assert [p.split(".")[0] for p in _parts(path)] == ["histogram-sigmoid-xavier", "train-he"]
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    os.rename(folder, moved)
    monkeypatch.chdir(tmp_path / "elsewhere")  # neither the old folder nor the results' own folder
    with h5py.File(moved / "fastinit.h5", "r") as f:  # what a user does: one tree
        assert f["train/he/v"][()].tolist() == [0, 1, 2, 3, 4]
        assert f["train/he"].attrs["status"] == "complete" and f["train/he"].name == "/train/he"
    info = describe(moved / "fastinit.h5")
    assert [n.path for n in info.nodes] == [
        "/histogram",
        "/histogram/sigmoid",
        "/histogram/sigmoid/xavier",
        "/histogram/sigmoid/xavier/v",
        "/train",
        "/train/he",
        "/train/he/v",
    ]
    assert info.size_bytes > os.path.getsize(moved / "fastinit.h5")  # the parts count


def test_an_update_writes_only_what_it_adds_and_replaces_only_its_group(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "/a", np.zeros(200_000))
    (first,) = _parts(path)
    stat = os.stat(os.path.join(parts_folder(path), first))
    _write(path, "/b", [1.0])
    assert os.stat(os.path.join(parts_folder(path), first)) == stat  # not read, not rewritten
    assert os.path.getsize(path) < 20_000  # the top file stays small
    _write(path, "/b", [2.0, 3.0])  # replaced: its old part is deleted
    assert len(_parts(path)) == 2
    with open_read(path) as f:
        assert f["/b/v"][()].tolist() == [2.0, 3.0] and f["/a/v"].shape == (200_000,)


def test_finished_groups_survive_a_later_failure_and_the_failing_one_leaves_nothing(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "/old", [1.0])
    with pytest.raises(RuntimeError, match="boom"):
        with open_results(path) as f:
            g = replace_group(f, "/done")
            g.create_dataset("v", data=[1.0])
            finish_group(g)
            replace_group(f, "/old").create_dataset("v", data=[9.0])  # would replace /old: never finished
            raise RuntimeError("boom")
    with open_read(path) as f:
        assert f["/done"].attrs["status"] == "complete" and f["/old/v"][()].tolist() == [1.0]
    assert len(_parts(path)) == 2 and _leftovers(tmp_path) == []


def test_index_groups_hold_parts_and_nested_groups_go_into_their_part(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path) as f:
        parent = replace_group(f, "/train/he", attrs={"seeds": [0, 1]}, part=False)
        for seed in (0, 1):
            g = replace_group(f, f"/train/he/seed={seed}")
            g.create_dataset("loss", data=[float(seed)])
            finish_group(g)
        parent.attrs["status"] = "complete"
        outer = replace_group(f, "/sweep/s")
        inner = replace_group(f, "/sweep/s/cells")
        inner.create_dataset("x", data=[1])
        assert inner.file == outer.file
    with open_read(path) as f:
        assert f["/train/he"].attrs["status"] == "complete"
        assert f["/train/he/seed=1/loss"][()].tolist() == [1.0]
        assert f["/sweep/s/cells"].attrs["status"] == "complete" and f["/sweep/s/cells/x"][()].tolist() == [1]
        assert isinstance(f["train"]["he"].get("seed=0", getlink=True), h5py.ExternalLink)
    assert len(_parts(path)) == 3
    with pytest.raises(StoreError, match="replace /sweep/s as a whole"):
        with open_results(path) as f:
            replace_group(f, "/sweep/s/cells")
    with open_results(path) as f:  # a one-part run replaces the index group and its seeds' parts
        replace_group(f, "/train/he").create_dataset("loss", data=[5.0])
    assert len(_parts(path)) == 2


def _old_layout_file(path):
    """A results file as fastinit wrote it before part files: every group in one file."""
    with h5py.File(path, "w") as f:
        f.attrs["fastinit_version"] = "0.0.9"
        f.attrs["created_utc"] = "2000-01-01T00:00:00Z"
        he = f.create_group("/train/he")
        he.attrs.update(status="complete", seeds=[0, 1])
        for seed in (0, 1):
            g = he.create_group(f"seed={seed}")
            g.attrs["status"] = "complete"
            g.create_dataset("loss", data=np.arange(3.0) + seed, chunks=True, compression="gzip")
        h = f.create_group("/histogram/sigmoid/xavier")
        h.attrs["status"] = "complete"
        h.create_dataset("mean", data=[0.5, 0.4])
        f.create_dataset("/loose", data=[7])


def test_old_single_file_results_are_read_and_converted_by_the_next_update(tmp_path):
    path = tmp_path / "old.h5"
    _old_layout_file(path)
    before = [
        (n.path, str(n.attrs), None if n.value is None else n.value.tolist()) for n in describe(path).nodes
    ]
    from fastinit.show import format_info

    assert "seed=1/" in format_info(describe(path))  # read as it is
    assert not os.path.exists(parts_folder(path))
    _write(path, "/histogram/relu/he", [1.0])  # the first update converts it
    after = describe(path)
    kept = [
        (n.path, str(n.attrs), None if n.value is None else n.value.tolist())
        for n in after.nodes
        if not n.path.startswith("/histogram/relu")
    ]
    assert kept == before
    assert after.attrs["created_utc"] == "2000-01-01T00:00:00Z" and after.attrs["fastinit_layout"] == 2
    with h5py.File(path, "r") as f:
        assert isinstance(f["train/he"].get("seed=0", getlink=True), h5py.ExternalLink)
        assert isinstance(f.get("/histogram/sigmoid/xavier", getlink=True), h5py.ExternalLink)
        assert f["train/he/seed=1/loss"].compression == "gzip"
    assert [p.split(".")[0] for p in _parts(path)] == [
        "histogram-relu-he",
        "histogram-sigmoid-xavier",
        "train-he-seed=0",
        "train-he-seed=1",
    ]
    assert os.path.getsize(path) < 20_000 and _leftovers(tmp_path) == []


def test_a_missing_or_corrupt_part_file_is_one_clear_line(tmp_path, capsys):
    from fastinit.cli import main

    path = tmp_path / "r.h5"
    _write(path, "/a", np.arange(1000.0))
    _write(path, "/b", [1.0])
    part_a, part_b = (os.path.join(parts_folder(path), name) for name in _parts(path))
    data = open(part_a, "rb").read()
    open(part_a, "wb").write(data[: len(data) // 3])
    with pytest.raises(StoreError, match=r"cannot read /a of .*r\.h5: its part file r\.h5\.parts/a\..*\.h5"):
        describe(path)
    open(part_a, "wb").write(data)
    os.remove(part_b)
    capsys.readouterr()
    assert main(["show", str(path), "/b"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the file is missing" in err and "Traceback" not in err


def test_copy_group_copies_a_group_from_another_results_set(tmp_path):
    with open_results(tmp_path / "other.h5", command_line="elsewhere") as f:
        g = replace_group(f, "/train/he/seed=1", {"seed": 1, "init": "he"})
        ds = create_appendable(g, "loss", (), "float64", attrs={"units": "nats"})
        append(ds, np.arange(5.0))
        g.create_group("extra").attrs["note"] = "kept"
        g.attrs["status"] = "diverged"
        finish_group(g)
    with (
        open_read(tmp_path / "other.h5") as source,
        open_results(tmp_path / "r.h5", command_line="here") as f,
    ):
        copy = copy_group(source["/train/he/seed=1"], f)
        assert copy.name == "/train/he/seed=1"
        finish_group(copy)
    with open_read(tmp_path / "r.h5") as f:
        g = f["train/he/seed=1"]
        assert g["loss"][()].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert g["loss"].compression == "gzip" and g["loss"].maxshape == (None,)
        assert g["loss"].attrs["units"] == "nats" and g["extra"].attrs["note"] == "kept"
        assert g.attrs["seed"] == 1 and g.attrs["status"] == "diverged"
        assert g.attrs["command_line"] == "here"  # which update wrote it: this one
