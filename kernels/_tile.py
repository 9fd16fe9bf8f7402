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


def emit_tile(context, builder, dt, mr, nv, a_, aoff, ars, aps, b_, boff, bps, c_, coff, crs, k):
    """Emit the tile's IR at ``builder``: ``dt`` the Numba float type, ``mr`` rows, ``nv``
    vectors per row, ``a_``, ``b_``, ``c_`` element pointers, the rest i64 values.

    Asks LLVM for 512-bit vectors in the function that holds it (float32 x 16,
    float64 x 8); LLVM splits them where the CPU has no AVX-512."""
    prefer_wide_vectors(builder)
    vl = 16 if dt == types.float32 else 8
    esz = 4 if dt == types.float32 else 8
    elt = context.get_value_type(dt)
    vty = ir.VectorType(elt, vl)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty] * 3), "llvm.fma.v%d%s" % (vl, "f32" if vl == 16 else "f64")
    )
    zero = ir.Constant(vty, None)
    undef = ir.Constant(vty, ir.Undefined)
    splat = ir.Constant(ir.VectorType(i32, vl), [0] * vl)
    rowoff = [builder.add(aoff, builder.mul(ars, ir.Constant(i64, r))) for r in range(mr)]

    pre = builder.block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.cbranch(builder.icmp_signed(">", k, ir.Constant(i64, 0)), loop, done)

    builder.position_at_end(loop)
    p = builder.phi(i64)
    p.add_incoming(ir.Constant(i64, 0), pre)
    accs = []
    for _ in range(mr * nv):
        phi = builder.phi(vty)
        phi.add_incoming(zero, pre)
        accs.append(phi)
    brow = builder.add(boff, builder.mul(p, bps))
    bvs = []
    for v in range(nv):
        ptr = builder.gep(b_, [builder.add(brow, ir.Constant(i64, v * vl))], inbounds=True)
        bvs.append(builder.load(builder.bitcast(ptr, vty.as_pointer()), align=esz, typ=vty))
    astep = builder.mul(p, aps)
    new = []
    for r in range(mr):
        ptr = builder.gep(a_, [builder.add(astep, rowoff[r])], inbounds=True)
        av = builder.shuffle_vector(builder.insert_element(undef, builder.load(ptr, typ=elt), ir.Constant(i32, 0)),
                                    undef, splat)
        for v in range(nv):
            new.append(builder.call(fma, [av, bvs[v], accs[r * nv + v]]))
    pn = builder.add(p, ir.Constant(i64, 1))
    end = builder.block
    p.add_incoming(pn, end)
    for phi, val in zip(accs, new):
        phi.add_incoming(val, end)
    builder.cbranch(builder.icmp_signed("<", pn, k), loop, done)

    builder.position_at_end(done)
    sums = []
    for val in new:
        phi = builder.phi(vty)
        phi.add_incoming(zero, pre)
        phi.add_incoming(val, end)
        sums.append(phi)
    for r in range(mr):
        crow = builder.add(coff, builder.mul(crs, ir.Constant(i64, r)))
        for v in range(nv):
            ptr = builder.gep(c_, [builder.add(crow, ir.Constant(i64, v * vl))], inbounds=True)
            builder.store(sums[r * nv + v], builder.bitcast(ptr, vty.as_pointer()), align=esz)


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
    dt = signature.args[0].dtype
    prefer_wide_vectors(builder)
    vl = 16 if dt == types.float32 else 8
    esz = 4 if dt == types.float32 else 8
    elt = context.get_value_type(dt)
    vty = ir.VectorType(elt, vl)
    i64 = ir.IntType(64)
    a_, b_, c_ = (context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 3, 6))
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty] * 3), "llvm.fma.v%d%s" % (vl, "f32" if vl == 16 else "f64")
    )
    zero = ir.Constant(vty, None)
    arow = [builder.add(aoff, builder.mul(ars, ir.Constant(i64, r))) for r in range(MR)]
    brow = [builder.add(boff, builder.mul(brs, ir.Constant(i64, r))) for r in range(MR)]

    pre = builder.block
    loop = builder.append_basic_block("dot.loop")
    done = builder.append_basic_block("dot.done")
    builder.cbranch(builder.icmp_signed(">", k, ir.Constant(i64, 0)), loop, done)

    builder.position_at_end(loop)
    p = builder.phi(i64)
    p.add_incoming(ir.Constant(i64, 0), pre)
    accs = []
    for _ in range(MR * MR):
        phi = builder.phi(vty)
        phi.add_incoming(zero, pre)
        accs.append(phi)

    def load(base, rowoff):
        ptr = builder.gep(base, [builder.add(rowoff, p)], inbounds=True)
        return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=esz, typ=vty)

    avs = [load(a_, arow[r]) for r in range(MR)]
    bvs = [load(b_, brow[j]) for j in range(MR)]
    new = [builder.call(fma, [avs[r], bvs[j], accs[r * MR + j]]) for r in range(MR) for j in range(MR)]
    pn = builder.add(p, ir.Constant(i64, vl))
    end = builder.block
    p.add_incoming(pn, end)
    for phi, val in zip(accs, new):
        phi.add_incoming(val, end)
    builder.cbranch(builder.icmp_signed("<", pn, k), loop, done)

    builder.position_at_end(done)
    sums = []
    for val in new:
        phi = builder.phi(vty)
        phi.add_incoming(zero, pre)
        phi.add_incoming(val, end)
        sums.append(phi)
    folded = _fold_pairs(builder, sums, vl)
    for idx in range(MR * MR):
        value = builder.extract_element(folded[idx // vl], ir.Constant(ir.IntType(32), idx % vl))
        r, j = divmod(idx, MR)
        ptr = builder.gep(c_, [builder.add(coff, builder.add(builder.mul(crs, ir.Constant(i64, r)),
                                                              ir.Constant(i64, j)))], inbounds=True)
        builder.store(value, ptr)
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
