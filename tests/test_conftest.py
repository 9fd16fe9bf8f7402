"""The suite's own machinery: which cases ``slow_on_simulator`` moves to the slow run."""

from types import SimpleNamespace

import pytest
from conftest import ON_SIMULATOR, _runs_cuda


def _item(**params):
    return SimpleNamespace(callspec=SimpleNamespace(params=params)) if params else SimpleNamespace()


def test_only_the_cuda_cases_of_a_test_count_as_cuda():
    assert _runs_cuda(_item(backend=SimpleNamespace(name="cuda"), activation="relu"))
    assert _runs_cuda(_item(fast_backend="cuda"))
    assert _runs_cuda(_item())  # no backend parameter: a cuda-only test (test_cuda.py)
    assert _runs_cuda(_item(activation="relu"))  # e.g. test_histogram's test_cuda_agrees_with_numpy
    assert not _runs_cuda(_item(backend=SimpleNamespace(name="cpu")))
    assert not _runs_cuda(_item(backend="numpy", spec="lsuv"))


def test_the_host_cases_of_slow_on_simulator_tests_stay_in_the_default_suite(request):
    marked = [i for i in request.session.items if i.get_closest_marker("slow_on_simulator")]
    if not marked:
        pytest.skip("no slow_on_simulator test selected in this run")
    slow = [i.nodeid for i in marked if i.get_closest_marker("slow")]
    host = [i.nodeid for i in marked if not _runs_cuda(i)]
    assert not [n for n in host if n in slow], "a host case was moved to the slow run"
    if ON_SIMULATOR and request.config.getoption("markexpr") == "not slow":
        assert not slow and host, "on the simulator the default run keeps only the host cases"
