"""The products' block sizes: read the caches (sysconf, sysfs, a default), plan the blocks from
them, override them, and the products stay right whatever the blocks are."""

import os

import numpy as np
import pytest
from conftest import DTYPES, tolerances

import fastinit.kernels.reference as ref
from fastinit.kernels.cpu_caches import DEFAULT_CACHE_SIZES, CacheSizes, cache_sizes, read_cache_sizes

KIB = 1024
SYSCONF = ("SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL2_CACHE_SIZE")


def _fake_sysfs(folder, entries):
    """Write ``index<i>/{level,type,size}`` under ``folder`` for each (level, type, size)."""
    for i, (level, kind, size) in enumerate(entries):
        d = folder / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return folder


XEON = [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "491520K")]


@pytest.fixture
def no_sysconf(monkeypatch):
    """A Python whose ``os.sysconf`` knows no cache names (CPython today)."""
    monkeypatch.setattr(os, "sysconf_names", {k: v for k, v in os.sysconf_names.items() if k not in SYSCONF})


def _sysconf_answers(monkeypatch, values):
    """``os.sysconf`` answers ``values[name]`` for the cache names, as glibc's does."""
    names = dict(os.sysconf_names, **{name: 10_000 + i for i, name in enumerate(SYSCONF)})
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf_names", names)
    monkeypatch.setattr(os, "sysconf", lambda name: values[name] if name in values else real(name))


def test_cache_sizes_from_sysfs(tmp_path, no_sysconf):
    got = read_cache_sizes(_fake_sysfs(tmp_path, XEON))
    assert got == CacheSizes(48 * KIB, 2048 * KIB, "sysfs")


def test_cache_sizes_from_sysconf_first(tmp_path, monkeypatch):
    _sysconf_answers(monkeypatch, {"SC_LEVEL1_DCACHE_SIZE": 32 * KIB, "SC_LEVEL2_CACHE_SIZE": 1024 * KIB})
    assert read_cache_sizes(_fake_sysfs(tmp_path, XEON)) == CacheSizes(32 * KIB, 1024 * KIB, "sysconf")


def test_cache_sizes_level_by_level(tmp_path, monkeypatch):
    """A level sysconf reports as 0 (unknown) comes from sysfs; one nobody knows, the default."""
    _sysconf_answers(monkeypatch, {"SC_LEVEL1_DCACHE_SIZE": 32 * KIB, "SC_LEVEL2_CACHE_SIZE": 0})
    assert read_cache_sizes(_fake_sysfs(tmp_path / "a", XEON)) == (32 * KIB, 2048 * KIB, "sysconf+sysfs")
    monkeypatch.setattr(os, "sysconf", lambda name: 0)
    only_l1 = _fake_sysfs(tmp_path / "b", [(1, "Data", "64K"), (2, "Instruction", "1M")])
    assert read_cache_sizes(only_l1) == (64 * KIB, DEFAULT_CACHE_SIZES[1], "sysfs+default")


def test_cache_sizes_default_when_nothing_answers(tmp_path, no_sysconf):
    assert read_cache_sizes(tmp_path / "absent") == CacheSizes(*DEFAULT_CACHE_SIZES, "default")


def test_cache_sizes_skip_odd_sysfs_entries(tmp_path, no_sysconf):
    """Unreadable or unparsable entries are passed over; units K, M and plain bytes parse."""
    folder = _fake_sysfs(tmp_path, [(1, "Data", "lots"), (1, "Unified", "49152"), (2, "Unified", "1M")])
    (folder / "index3").mkdir()  # no files at all
    assert read_cache_sizes(folder) == CacheSizes(48 * KIB, 1024 * KIB, "sysfs")


def test_cache_sizes_of_this_machine_are_plausible():
    got = cache_sizes()
    assert got is cache_sizes(), "read once per process"
    assert 4 * KIB <= got.l1d <= got.l2 <= 1 << 30, got
    assert set(got.source.split("+")) <= {"sysconf", "sysfs", "default"}


def test_describe_names_the_cache_sizes():
    """Every benchmark's machine description carries the sizes the blocks were planned from."""
    from fastinit.machine import describe

    d = describe()
    assert (d["l1d_bytes"], d["l2_bytes"], d["caches_from"]) == tuple(cache_sizes())


@pytest.mark.parametrize(
    "dtype,l1,l2,want",
    [
        (np.float32, 32 * KIB, 1024 * KIB, (1024, 192)),  # AMD Zen 4/5: the former constants
        (np.float64, 32 * KIB, 1024 * KIB, (512, 192)),
        (np.float32, 32 * KIB, 512 * KIB, (1024, 96)),  # AMD Zen 3
        (np.float32, 48 * KIB, 2048 * KIB, (1536, 255)),  # Intel Xeon (Sapphire Rapids)
        (np.float64, 48 * KIB, 2048 * KIB, (768, 255)),
        (np.float32, 100, 100, (16, 3)),  # tiny caches: one cache line, one register block
        (np.float64, 1, 1, (8, 3)),
    ],
)
def test_product_blocks_plan(dtype, l1, l2, want):
    from fastinit.kernels.cpu import product_blocks

    kc, nc = product_blocks(dtype, l1, l2)
    assert (kc, nc) == want
    item = np.dtype(dtype).itemsize
    assert 7 * kc * item <= max(l1, 7 * 64) and nc % 3 == 0 and kc * item % 64 == 0


@pytest.fixture
def set_blocks(monkeypatch):
    """``set_blocks(value)`` sets ``FASTINIT_PRODUCT_BLOCKS`` (None: unset) and drops the plans
    made so far; the plans made under it are dropped afterwards."""
    from fastinit.kernels.cpu import machine_blocks

    def set_(value):
        if value is None:
            monkeypatch.delenv("FASTINIT_PRODUCT_BLOCKS", raising=False)
        else:
            monkeypatch.setenv("FASTINIT_PRODUCT_BLOCKS", value)
        machine_blocks.cache_clear()

    yield set_
    machine_blocks.cache_clear()


def test_machine_blocks_follow_the_caches_unless_overridden(set_blocks):
    from fastinit.kernels import cpu

    set_blocks(None)
    for dtype in DTYPES:
        assert cpu.machine_blocks(dtype) == cpu.product_blocks(dtype, *cache_sizes()[:2])
    set_blocks("5, 7")
    assert cpu.machine_blocks(np.float32) == cpu.machine_blocks(np.float64) == (5, 7)
    for bad in ("5", "5,0", "a,b", "1,2,3", ""):
        set_blocks(bad)
        with pytest.raises(ValueError, match="FASTINIT_PRODUCT_BLOCKS"):
            cpu.machine_blocks(np.float32)


#: Blocks that cut every product into many pieces, none a multiple of the 4 x 3 register block.
ODD_BLOCKS = [(1, 1), (1, 5), (3, 2), (7, 4), (17, 3)]


def _operands(rng, m, k, n, dtype, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("blocks", ODD_BLOCKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_into_right_with_any_blocks(blocks, dtype):
    """Every transpose, on one thread and in tiles over two (130^3 is big enough to split),
    with depth and column blocks that leave a tail everywhere."""
    from fastinit.kernels import cpu

    rng = np.random.default_rng(sum(blocks))
    for m, k, n in ((13, 37, 11), (130, 131, 129)):
        for trans_a in (False, True):
            for trans_b in (False, True):
                a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b)
                want = ref.matmul(
                    a.astype(np.float64), b.astype(np.float64), trans_a=trans_a, trans_b=trans_b
                )
                rtol, atol = tolerances(dtype, scale=k)
                for threads in (1, 2):
                    out = np.full((m, n), np.nan, dtype)
                    cpu.matmul_into(a, b, out, trans_a, trans_b, threads, blocks)
                    np.testing.assert_allclose(out, want, rtol=rtol, atol=atol, err_msg=f"{m, k, n, threads}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_api_uses_the_overridden_blocks(set_blocks, dtype):
    """``FASTINIT_PRODUCT_BLOCKS`` reaches the products behind the validated API: with blocks
    of (3, 2) the dense layer's forward and backward still match the reference."""
    from fastinit.kernels import cpu

    set_blocks("3,2")
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((29, 23)).astype(dtype), rng.standard_normal((23, 17)).astype(dtype)
    b, dy = rng.standard_normal(17).astype(dtype), rng.standard_normal((29, 17)).astype(dtype)
    rtol, atol = tolerances(dtype, scale=29)
    y = cpu.dense_forward(x, w, b, "tanh")
    np.testing.assert_allclose(y, ref.dense_forward(x, w, b, "tanh"), rtol=rtol, atol=atol)
    for got, want in zip(cpu.dense_backward(x, w, y, dy, "tanh"), ref.dense_backward(x, w, y, dy, "tanh")):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_mlp_cpu_engine_right_with_tiny_blocks(set_blocks):
    """The cpu engine plans its blocks when it is made: with (5, 4) every product of a
    training step is cut into depth and column blocks, and it still matches numpy."""
    from fastinit import MLP

    set_blocks("5,4")
    rng = np.random.default_rng(3)
    sizes = [37, 21, 19, 6]
    x, labels = rng.standard_normal((40, 37)), rng.integers(0, 6, 40)
    cpu, numpy = (MLP(sizes, activation="relu", backend=k, dtype="float64", seed=1) for k in ("cpu", "numpy"))
    assert cpu._engine._blocks == (5, 4)
    for _ in range(3):
        got, want = cpu.train_step(x, labels, 0.1), numpy.train_step(x, labels, 0.1)
        assert got == pytest.approx(want, rel=1e-12)
    for (w, b), (rw, rb) in zip(cpu.params, numpy.params):
        np.testing.assert_allclose(w, rw, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(b, rb, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize(
    "n,k,blocks,want",
    [
        (100, 10, (1024, 192), True),  # the output layer's delta: a depth of 10
        (784, 100, (1024, 192), True),  # long output rows: the first layer's dX
        (100, 100, (1024, 192), False),  # as long as deep: dot products
        (100, 784, (1024, 192), False),
        (10, 100, (1024, 192), False),  # rows too short for vectors
        (10, 10, (1024, 192), False),
        (784, 100, (512, 96), False),  # b (100 x 784) would not fit in L2
        (784, 100, (512, 192), False),  # 4 output rows would not fit in L1
    ],
)
def test_outer_form_plan(n, k, blocks, want):
    from fastinit.kernels.cpu_products import outer_form

    assert outer_form(n, k, blocks) is want


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_into_right_in_outer_form(dtype):
    """The shapes `outer_form` takes (every transpose; on one thread and split over two: 128 x
    40 x 784 is big enough) give the reference's numbers, and so does a zero depth."""
    from fastinit.kernels import cpu
    from fastinit.kernels.cpu_products import outer_form

    rng = np.random.default_rng(11)
    blocks = (1024, 192)
    for m, k, n in ((13, 10, 100), (37, 63, 70), (128, 40, 784), (5, 0, 20)):
        assert outer_form(n, k, blocks)
        for trans_a in (False, True):
            for trans_b in (False, True):
                a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b)
                want = ref.matmul(
                    a.astype(np.float64), b.astype(np.float64), trans_a=trans_a, trans_b=trans_b
                )
                rtol, atol = tolerances(dtype, scale=max(k, 1))
                for threads in (1, 2):
                    out = np.full((m, n), np.nan, dtype)
                    cpu.matmul_into(a, b, out, trans_a, trans_b, threads, blocks)
                    np.testing.assert_allclose(out, want, rtol=rtol, atol=atol, err_msg=f"{m, k, n, threads}")


BLOCKS_SCRIPT = """
import numpy as np
from fastinit.kernels import cpu
rng = np.random.default_rng(0)
a, b = rng.standard_normal((200, 300)), rng.standard_normal((300, 50))
assert np.allclose(cpu.matmul(a, b), a @ b)
print(*cpu.machine_blocks(np.float64), sum(cpu.matmul_into.stats.cache_hits.values()))
"""


@pytest.mark.slow
def test_block_sizes_are_not_frozen_into_the_cache(tmp_path):
    """A cache filled by a process with blocks of (5, 4) serves a later process, which still
    plans its own blocks from this machine's caches."""
    import subprocess
    import sys

    from fastinit.kernels.cpu import product_blocks

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTINIT_"))}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    runs = []
    for override in ("5,4", None):
        run_env = dict(env, **({"FASTINIT_PRODUCT_BLOCKS": override} if override else {}))
        proc = subprocess.run(
            [sys.executable, "-c", BLOCKS_SCRIPT], capture_output=True, text=True, env=run_env, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append([int(v) for v in proc.stdout.split()])
    assert runs[0] == [5, 4, 0], runs  # compiled, into the cache
    kc, nc, hits = runs[1]
    assert (kc, nc) == product_blocks(np.float64, *cache_sizes()[:2]), runs
    assert hits >= 1, "the second process should have loaded matmul_into from the cache"


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_into_right_as_its_transpose(dtype):
    """``a.T @ op(b)`` whose output rows are too short for outer products but whose columns
    are long (a first layer's weight gradient, 784 x 100 at depth 128) is computed as its
    transpose in outer form: the reference's numbers for both ``op(b)``, on one thread and
    split over two, and for a zero depth."""
    from fastinit.kernels import cpu
    from fastinit.kernels.cpu_products import outer_form

    rng = np.random.default_rng(12)
    blocks = (1024, 192)
    for m, k, n in ((784, 128, 100), (64, 3, 2), (301, 257, 65), (40, 0, 7)):
        assert outer_form(m, k, blocks) and not outer_form(n, k, blocks)
        for trans_b in (False, True):
            a, b = _operands(rng, m, k, n, dtype, True, trans_b)
            want = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a=True, trans_b=trans_b)
            rtol, atol = tolerances(dtype, scale=max(k, 1))
            for threads in (1, 2):
                out = np.full((m, n), np.nan, dtype)
                cpu.matmul_into(a, b, out, True, trans_b, threads, blocks)
                np.testing.assert_allclose(out, want, rtol=rtol, atol=atol, err_msg=f"{m, k, n, threads}")
