"""numpydoc docstrings on the public API, checked with ``numpydoc.validate``.

For every module in ``DOCUMENTED_MODULES``, every public name in its
``__all__`` that is a function or a class (constants are skipped), and every
public method or property a class defines itself, is validated with
``numpydoc.validate.validate``; the errors among ``CHECKED_CODES`` fail the
test, all offenders listed in one message. Add a module to
``DOCUMENTED_MODULES`` once its docstrings are in numpydoc form.
"""

import importlib
import inspect

import numpydoc.validate as numpydoc_validate  # in the test extra: pip install -e ".[test]"
import pytest
from numpydoc.docscrape import get_doc_object

#: Modules whose public API must carry numpydoc docstrings.
DOCUMENTED_MODULES = (
    "fastinit.kernels.reference",
    "fastinit.kernels.cuda",
    "fastinit.kernels.checks",
    "fastinit.kernels.cpu",
    "fastinit.kernels.cpu_products",
    "fastinit.kernels.cpu_caches",
    "fastinit.kernels.cpu_activations",
    "fastinit.kernels.cpu_elementwise",
    "fastinit.kernels.cpu_losses",
    "fastinit.kernels.jit",
    "fastinit.mlp",
    "fastinit.training",
    "fastinit.init",
    "fastinit.data",
    "fastinit.datainit",
    "fastinit.engines",
    "fastinit.engines.numpy",
    "fastinit.engines.cuda",
    "fastinit.engines.cpu",
    "fastinit.theory",
    "fastinit.machine",
    "fastinit.progress",
    "fastinit.backends",
    "fastinit.formatting",
    "fastinit.errors",
    "fastinit.benchreport",
    "fastinit.schema",
    "fastinit.store",
    "fastinit.show",
    "fastinit.experiments.executors",
    "fastinit.cli",
    "fastinit.signals",
    "fastinit.outputs",
    "fastinit.timing",
    "fastinit.experiments.profile",
    "fastinit.plots",
    "fastinit.experiments.histogram",
    "fastinit.experiments.train",
    "fastinit.experiments.sweep",
    "fastinit.experiments.spectrum",
    "fastinit.experiments.spectrum_training",
    "fastinit.experiments.config_checks",
    "fastinit.experiments.reproduce",
    "fastinit.experiments.meanfield",
    "fastinit.threads",
)

#: The numpydoc error codes that fail the test. Left out on purpose: summary and
#: description punctuation and wording (GL01-GL03, SS02-SS05, PR05, PR06, PR08,
#: PR09, RT04, RT05), RT02 (a named single return is allowed), and the optional
#: sections (ES01 extended summary, SA01-SA04 See Also, EX01 Examples).
CHECKED_CODES = frozenset(
    {
        "GL05",  # tabs at the start of a line
        "GL06",  # unknown section
        "GL07",  # sections in the wrong order
        "GL08",  # no docstring
        "GL09",  # deprecation note not first
        "GL10",  # reST directive with one colon
        "SS01",  # no summary
        "SS06",  # summary longer than one line
        "PR01",  # a parameter not documented
        "PR02",  # an unknown parameter documented
        "PR03",  # parameters documented in the wrong order
        "PR04",  # a parameter without a type
        "PR07",  # a parameter without a description
        "PR10",  # "name: type" instead of "name : type"
        "RT01",  # no Returns section for a function that returns something
        "RT03",  # a return value without a description
        "YD01",  # no Yields section for a generator
    }
)


def _validate(name, obj):
    """The numpydoc result for ``obj``, importable as ``name``.

    Functions wrapped by a decorator that keeps ``__wrapped__`` (``functools.lru_cache``,
    Numba dispatchers) are validated as the function they wrap: numpydoc only checks
    RT01 and YD01 for plain functions.
    """
    target = inspect.unwrap(obj) if not isinstance(obj, (type, property)) else obj
    if target is not obj and inspect.isfunction(target):
        return numpydoc_validate.validate(get_doc_object(target))
    return numpydoc_validate.validate(name)


def _public_objects(module_name):
    """``(qualified name, object)`` for each function, class and class member to check."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or callable(obj)):
            continue  # constants are documented in the module docstring or by comments
        yield f"{module_name}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, property):
                    yield f"{module_name}.{name}.{attr}", member
                elif inspect.isfunction(getattr(member, "__func__", member)):  # methods, static and class
                    yield f"{module_name}.{name}.{attr}", getattr(obj, attr)


def _offences(names_and_objects):
    offences = []
    for qualname, obj in names_and_objects:
        codes = sorted({code for code, _ in _validate(qualname, obj)["errors"]} & CHECKED_CODES)
        if codes:
            offences.append(f"{qualname}: {', '.join(codes)}")
    return offences


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_module_declares_its_public_api(module_name):
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{module_name} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


def test_public_api_has_numpydoc_docstrings():
    objects = [item for module_name in DOCUMENTED_MODULES for item in _public_objects(module_name)]
    assert len(objects) > 100  # the walk found the API, not nothing
    offences = _offences(objects)
    assert not offences, (
        f"{len(offences)} docstring(s) fail numpydoc checks {sorted(CHECKED_CODES)} "
        "(see numpydoc.validate.ERROR_MSGS):\n" + "\n".join(offences)
    )


def _undocumented(x, scale=2):
    return x * scale


def _documented(x, scale=2):
    """Scale ``x``.

    Parameters
    ----------
    x : float
        The value.
    scale : float, default 2
        The factor.

    Returns
    -------
    float
        ``x * scale``.
    """
    return x * scale


def _no_returns(x, scale=2):
    return x * scale


_no_returns.__doc__ = _documented.__doc__.split("    Returns")[0]  # the same, less its Returns section


def _bad(x, scale=2):
    """Scale ``x``.

    Returns
    -------
    float
        ``x * scale``.

    Parameters
    ----------
    x : float
        The value.
    y: float
    """
    return x * scale


def test_the_check_catches_what_it_claims_to():
    """The test above can fail: each kind of offence is reported with its code."""
    here = __name__

    def codes(fn):
        return _offences([(f"{here}.{fn.__name__}", fn)])

    assert codes(_documented) == []
    assert codes(_undocumented) == [f"{here}._undocumented: GL08"]
    assert codes(_no_returns) == [f"{here}._no_returns: RT01"]
    got = codes(_bad)[0].split(": ", 1)[1].split(", ")
    assert {"GL07", "PR01", "PR02", "PR10"} <= set(got), got
