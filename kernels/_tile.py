"""Register-blocked tiles in LLVM IR: ``emit_tile``, ``outer_tile(nv, ...)``, ``dot_tile``.

``c[coff + r*crs + q] = sum_p a[aoff + r*ars + p*aps] * b[boff + p*bps + q]`` for
r < 4 and q < nv * VL (VL = 16 float32 or 8 float64 lanes), all arrays
C-contiguous of one float dtype and indexed as flat. The 4 x nv vectors of
the tile stay in registers across the whole sum over p: one broadcast per row
and nv vector loads per step feed 4 * nv FMAs, and c is written once. This is
what LLVM does not produce from a Numba loop nest, whose accumulators live in
memory (array stores are not promoted to registers). ``emit_tile`` is the
IR itself (any number of rows), also the micro-kernel of ``kernels.cpu``'s
matmul; ``outer_tile`` is a 4-row intrinsic for the cpu MLP engine's
products (``fastinit.mlp``); ``dot_tile`` is 4 x 4 dot products along
contiguous rows, its 16 accumulators summed horizontally together.
Internal; imports Numba. Numba's on-disk cache does not track this module:
after editing it, clear the ``__pycache__`` folders of ``kernels`` and
``fastinit`` (or point ``NUMBA_CACHE_DIR`` at a fresh folder).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["emit_tile", "outer_tile", "outer_tile_py", "dot_tile", "dot_tile_py", "lanes"]

MR = 4


def prefer_wide_vectors(builder):
    """Ask LLVM for 512-bit vectors in the function being built (it splits them where the
    CPU has no AVX-512)."""
    attrs = builder.function.attributes
    try:  # llvmlite validates attribute names and knows no string attributes: bypass it
        set.add(attrs, '"min-legal-vector-width"="512"')
        set.add(attrs, '"prefer-vector-width"="512"')
    except TypeError:  # a future llvmlite without a set underneath: LLVM picks the width
        pass


class _Vectors:
    """The vector type of a float dtype and what the tiles need of it: ``vl`` lanes
    (512 bits), ``esz`` bytes per element, ``elt``/``vty`` LLVM types, ``fma``, ``load``."""

    def __init__(self, context, builder, dt):
        self.builder = builder
        self.vl = 16 if dt == types.float32 else 8
        self.esz = 4 if dt == types.float32 else 8
        self.elt = context.get_value_type(dt)
        self.vty = ir.VectorType(self.elt, self.vl)
        name = "llvm.fma.v%d%s" % (self.vl, "f32" if self.vl == 16 else "f64")
        self._fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(self.vty, [self.vty] * 3), name)

    def fma(self, a, b, c):
        return self.builder.call(self._fma, [a, b, c])

    def at(self, base, offset):
        """Pointer to a vector at element ``offset`` of ``base``."""
        return self.builder.bitcast(self.builder.gep(base, [offset], inbounds=True), self.vty.as_pointer())

    def load(self, base, offset):
        return self.builder.load(self.at(base, offset), align=self.esz, typ=self.vty)


def _accumulate(builder, vec, count, k, step, body):
    """Emit ``for p in range(0, k, step)`` carrying ``count`` vector accumulators that start
    at zero: ``body(p, accs)`` returns their new values. Returns their values after the loop
    (zeros when ``k <= 0``); the builder is left after the loop."""
    i64 = ir.IntType(64)
    zero = ir.Constant(vec.vty, None)
    pre = builder.block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.cbranch(builder.icmp_signed(">", k, ir.Constant(i64, 0)), loop, done)

    builder.position_at_end(loop)
    p = builder.phi(i64)
    p.add_incoming(ir.Constant(i64, 0), pre)
    accs = []
    for _ in range(count):
        phi = builder.phi(vec.vty)
        phi.add_incoming(zero, pre)
        accs.append(phi)
    new = body(p, accs)
    pn = builder.add(p, ir.Constant(i64, step))
    end = builder.block
    p.add_incoming(pn, end)
    for phi, val in zip(accs, new):
        phi.add_incoming(val, end)
    builder.cbranch(builder.icmp_signed("<", pn, k), loop, done)

    builder.position_at_end(done)
    sums = []
    for val in new:
        phi = builder.phi(vec.vty)
        phi.add_incoming(zero, pre)
        phi.add_incoming(val, end)
        sums.append(phi)
    return sums


def emit_tile(context, builder, dt, mr, nv, a_, aoff, ars, aps, b_, boff, bps, c_, coff, crs, k):
    """Emit the tile's IR at ``builder``: ``dt`` the Numba float type, ``mr`` rows, ``nv``
    vectors per row, ``a_``, ``b_``, ``c_`` element pointers, the rest i64 values.

    Asks LLVM for 512-bit vectors in the function that holds it (float32 x 16,
    float64 x 8); LLVM splits them where the CPU has no AVX-512."""
    prefer_wide_vectors(builder)
    vec = _Vectors(context, builder, dt)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    undef = ir.Constant(vec.vty, ir.Undefined)
    splat = ir.Constant(ir.VectorType(i32, vec.vl), [0] * vec.vl)
    rowoff = [builder.add(aoff, builder.mul(ars, ir.Constant(i64, r))) for r in range(mr)]

    def body(p, accs):
        brow = builder.add(boff, builder.mul(p, bps))
        bvs = [vec.load(b_, builder.add(brow, ir.Constant(i64, v * vec.vl))) for v in range(nv)]
        astep = builder.mul(p, aps)
        new = []
        for r in range(mr):
            ptr = builder.gep(a_, [builder.add(astep, rowoff[r])], inbounds=True)
            a = builder.insert_element(undef, builder.load(ptr, typ=vec.elt), ir.Constant(i32, 0))
            av = builder.shuffle_vector(a, undef, splat)
            new.extend(vec.fma(av, bvs[v], accs[r * nv + v]) for v in range(nv))
        return new

    sums = _accumulate(builder, vec, mr * nv, k, 1, body)
    for r in range(mr):
        crow = builder.add(coff, builder.mul(crs, ir.Constant(i64, r)))
        for v in range(nv):
            builder.store(sums[r * nv + v], vec.at(c_, builder.add(crow, ir.Constant(i64, v * vec.vl))), align=vec.esz)


def _codegen(nv):
    def codegen(context, builder, signature, args):
        _, a, aoff, ars, aps, b, boff, bps, c, coff, crs, k = args
        data = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in (1, 5, 8)]
        emit_tile(context, builder, signature.args[1].dtype, MR, nv,
                  data[0], aoff, ars, aps, data[1], boff, bps, data[2], coff, crs, k)
        return context.get_dummy_value()

    return codegen


@intrinsic
def outer_tile(typingctx, nv, a, aoff, ars, aps, b, boff, bps, c, coff, crs, k):
    """The tile (see the module docstring); ``nv`` a literal int (1 to 4) of vectors per row."""
    arrays = (a, b, c)
    if not isinstance(nv, types.IntegerLiteral) or not 1 <= nv.literal_value <= 4:
        return None
    if not all(isinstance(x, types.Array) and x.dtype in (types.float32, types.float64) for x in arrays):
        return None
    if len({x.dtype for x in arrays}) != 1:
        return None
    i64 = types.int64
    return types.none(nv, a, i64, i64, i64, b, i64, i64, c, i64, i64, i64), _codegen(nv.literal_value)


def lanes(dtype):
    """VL: vector lanes of a tile column block for a NumPy float dtype (16 float32, 8 float64)."""
    return 16 if dtype.itemsize == 4 else 8


def outer_tile_py(nv, a, aoff, ars, aps, b, boff, bps, c, coff, crs, k):
    """``outer_tile`` in NumPy, for ``NUMBA_DISABLE_JIT`` (same arguments; arrays any shape, used flat)."""
    import numpy as np

    af, bf, cf = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    width = nv * lanes(a.dtype)
    for r in range(MR):
        acc = np.zeros(width, dtype=a.dtype)
        for p in range(k):
            acc += af[aoff + r * ars + p * aps] * bf[boff + p * bps : boff + p * bps + width]
        cf[coff + r * crs : coff + r * crs + width] = acc


def _fold_pairs(builder, vectors, lanes):
    """Sum each of ``vectors`` (all ``lanes`` wide) horizontally, all at once: pairs of
    vectors are folded half onto half (one shuffle per half, one add), ``log2(lanes)``
    times, until each lane holds one vector's sum. Returns ``len(vectors) // lanes``
    vectors whose lanes are the sums in the input order."""
    g = lanes  # lanes each input vector's partial sums occupy
    while g > 1:
        m = lanes // g  # inputs represented in each vector
        half = g // 2
        lo = [o * g + j for o in range(m) for j in range(half)]
        hi = [i + half for i in lo]
        lo_idx = ir.Constant(ir.VectorType(ir.IntType(32), lanes), lo + [lanes + i for i in lo])
        hi_idx = ir.Constant(ir.VectorType(ir.IntType(32), lanes), hi + [lanes + i for i in hi])
        vectors = [
            builder.fadd(builder.shuffle_vector(a, b, lo_idx), builder.shuffle_vector(a, b, hi_idx))
            for a, b in zip(vectors[0::2], vectors[1::2])
        ]
        g = half
    return vectors


def _dot_codegen(context, builder, signature, args):
    a, aoff, ars, b, boff, brs, c, coff, crs, k = args
    prefer_wide_vectors(builder)
    vec = _Vectors(context, builder, signature.args[0].dtype)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    a_, b_, c_ = (context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 3, 6))
    arow = [builder.add(aoff, builder.mul(ars, ir.Constant(i64, r))) for r in range(MR)]
    brow = [builder.add(boff, builder.mul(brs, ir.Constant(i64, r))) for r in range(MR)]

    def body(p, accs):
        avs = [vec.load(a_, builder.add(arow[r], p)) for r in range(MR)]
        bvs = [vec.load(b_, builder.add(brow[j], p)) for j in range(MR)]
        return [vec.fma(avs[r], bvs[j], accs[r * MR + j]) for r in range(MR) for j in range(MR)]

    folded = _fold_pairs(builder, _accumulate(builder, vec, MR * MR, k, vec.vl, body), vec.vl)
    for idx in range(MR * MR):
        value = builder.extract_element(folded[idx // vec.vl], ir.Constant(i32, idx % vec.vl))
        r, j = divmod(idx, MR)
        offset = builder.add(coff, builder.add(builder.mul(crs, ir.Constant(i64, r)), ir.Constant(i64, j)))
        builder.store(value, builder.gep(c_, [offset], inbounds=True))
    return context.get_dummy_value()


@intrinsic
def dot_tile(typingctx, a, aoff, ars, b, boff, brs, c, coff, crs, k):
    """``c[coff + r*crs + j] = sum_{p<k} a[aoff + r*ars + p] * b[boff + j*brs + p]`` for r, j < 4:
    16 dot products along contiguous rows of ``a`` and ``b`` (flat-indexed C-contiguous
    arrays of one float dtype), ``k`` a multiple of the vector lanes (``lanes``; 0 stores zeros).
    The 16 vector accumulators are summed horizontally together (``_fold_pairs``)."""
    arrays = (a, b, c)
    if not all(isinstance(x, types.Array) and x.dtype in (types.float32, types.float64) for x in arrays):
        return None
    if len({x.dtype for x in arrays}) != 1:
        return None
    i64 = types.int64
    return types.none(a, i64, i64, b, i64, i64, c, i64, i64, i64), _dot_codegen


def dot_tile_py(a, aoff, ars, b, boff, brs, c, coff, crs, k):
    """``dot_tile`` in NumPy, for ``NUMBA_DISABLE_JIT``."""
    af, bf, cf = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    for r in range(MR):
        for j in range(MR):
            cf[coff + r * crs + j] = af[aoff + r * ars : aoff + r * ars + k] @ bf[boff + j * brs : boff + j * brs + k]
