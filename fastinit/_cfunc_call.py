"""Call a ``numba.cfunc`` by address from compiled code: ``call_cfunc(address, *args)``.

Numba's own first-class functions (a ``cfunc`` object passed as an argument)
cost about 10 us per call of the caller from Python, to type and unbox the
object; an integer address costs nothing. The address must be the ``.address``
of a live ``cfunc`` returning float64 whose argument types have the machine
representation of ``args``' types: the same types, except that an array's
read-only flag does not change it, so a read-only array may be passed for a
writeable one that the cfunc only reads. Nothing checks this at run time; a
mismatch is undefined behaviour. Imports Numba: import this module only when
compiling.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["call_cfunc"]


@intrinsic
def call_cfunc(typingctx, address, *args):
    """float64 result of the cfunc at integer ``address`` called with ``args``."""
    if len(args) == 1 and isinstance(args[0], types.BaseTuple):
        args = tuple(args[0])  # Numba hands the star-args over as one tuple
    if not isinstance(address, types.Integer):
        return None
    sig = types.float64(address, types.StarArgTuple(args))

    def codegen(context, builder, signature, llargs):
        packed = llargs[1]
        values = [builder.extract_value(packed, i) for i in range(len(args))]
        fnty = ir.FunctionType(ir.DoubleType(), [context.get_value_type(t) for t in args])
        return builder.call(builder.inttoptr(llargs[0], fnty.as_pointer()), values)

    return sig, codegen
