"""The import graph of the package: dependencies point down, no cycles, no private names
across modules.

Layers, from the bottom: ``fastinit.kernels`` (knows nothing of the rest); the core (init,
data, theory, the engines and the MLP); the experiments; the CLI. ``plots``, ``store`` and
``show`` sit beside the experiments and never import them. Imports inside functions count.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fastinit", "kernels")  # folders; kernels/ is the package fastinit.kernels


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "kernels":  # installed as fastinit.kernels (fastinit/kernels links to it)
        parts.insert(0, "fastinit")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(packages=PACKAGES):
    link = ROOT / "fastinit" / "kernels"
    return {
        _module_name(p): p
        for pkg in packages
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if link not in p.parents
    }


def _resolve(module, node, is_package):
    """The absolute module an ``ImportFrom`` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules):
    """{module: [(imported module, name or None, line)]} for imports of the project's modules."""
    out = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node, path.name == "__init__.py")
                if target.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.append(
                        (sub, None, node.lineno) if sub in modules else (target, alias.name, node.lineno)
                    )
        out[module] = found
    return out


def _owner(name, modules):
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def test_no_private_names_cross_modules():
    modules = _modules(PACKAGES + ("bench",))
    bad = [
        f"{m}:{line} imports {name} from {target}"
        for m, found in _imports(modules).items()
        for target, name, line in found
        if name and name.startswith("_") and not name.startswith("__")
    ]
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: {_owner(t, modules) for t, _, _ in found} - {m, ""} for m, found in _imports(modules).items()}
    # Packages' __init__ re-export their submodules: an edge into a package is not an edge back.
    graph = {
        m: {t for t in ts if not (modules[t].name == "__init__.py" and m.startswith(t + "."))}
        for m, ts in graph.items()
    }
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def _layer(module):
    if module.startswith("fastinit.kernels"):
        return 0
    if module.startswith("fastinit.experiments"):
        return 2
    if module in ("fastinit.cli", "fastinit.__main__"):
        return 3
    return 1


def test_dependencies_point_down():
    modules = _modules()
    bad = []
    beside = ("fastinit.plots", "fastinit.store", "fastinit.show")
    for m, found in _imports(modules).items():
        for target, _, line in found:
            t = _owner(target, modules)
            if t in ("fastinit", "fastinit.kernels"):
                continue  # the packages' own __init__ (version, lazy names)
            if _layer(t) > _layer(m) or (m in beside and t.startswith("fastinit.experiments")):
                bad.append(f"{m}:{line} imports {t}")
    assert not bad, "\n".join(bad)


def test_every_error_class_derives_from_fastinit_error():
    """One base, so the CLI classifies errors by type (``exit_status``), not by a list."""
    import importlib
    import inspect

    from fastinit.errors import FastinitError

    names = []
    for module in _modules(("fastinit",)):
        if module.endswith("__main__"):
            continue
        for name, obj in vars(importlib.import_module(module)).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module:
                names.append(name)
                assert issubclass(obj, FastinitError), f"{module}.{name} does not derive from FastinitError"
    assert {"DataError", "StoreError", "SweepError", "UsageError", "BackendError"} <= set(names)


def test_one_top_level_import_name():
    """The wheel installs only ``fastinit`` (PyPI's ``kernels`` is another project)."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"fastinit"}
    stray = [
        f"{m}:{line} imports {t}"
        for m, found in _imports(_modules()).items()
        for t, _, line in found
        if t.split(".")[0] == "kernels"
    ]
    assert not stray, "\n".join(stray)


EXPERIMENTS = {  # module: its config class; every one has run and write, all but two a read
    "histogram": "HistogramConfig",
    "train": "TrainConfig",
    "sweep": "SweepConfig",
    "spectrum": "SpectrumConfig",
    "spectrum_training": "TrainingConfig",
    "meanfield": "TheoryConfig",
    "profile": "ProfileConfig",
}
NO_READ = {  # why there is no read(path) -> Result
    "train": "one file may hold runs of several configs: read_runs and read_snapshots read them",
    "meanfield": "its few columns are read with h5py or fastinit show",
}


def test_every_experiment_has_the_same_four_parts():
    """A config dataclass with validate(), run(config) with no file, write(f, result), read."""
    import dataclasses
    import importlib
    import inspect

    for name, config_name in EXPERIMENTS.items():
        module = importlib.import_module(f"fastinit.experiments.{name}")
        config = getattr(module, config_name)
        assert dataclasses.is_dataclass(config) and callable(config.validate), name
        run = inspect.signature(module.run)
        assert next(iter(run.parameters)) == "config", f"{name}.run takes the config first"
        assert not {"out", "path"} & set(run.parameters), f"{name}.run must not need a file"
        assert list(inspect.signature(module.write).parameters)[:2] == ["f", "result"], name
        assert hasattr(module, "read") != (name in NO_READ), name
