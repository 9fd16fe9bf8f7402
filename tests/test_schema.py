"""`fastinit.schema`: the one declaration of the HDF5 layout, and the files and docs that follow it."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_train import SMALL as TRAIN_SMALL
from test_train import synthetic

from fastinit import schema
from fastinit.show import describe, format_info
from fastinit.store import open_read, open_results, replace_group

DOC = Path(__file__).resolve().parent.parent / "docs" / "storage.md"


def test_the_docs_layout_block_is_the_rendered_schema():
    text = DOC.read_text()
    block = re.search(r"<!-- generated: [^\n]*-->\n```\n(.*?)```\n", text, re.DOTALL)
    assert block, "docs/storage.md lost its generated layout block"
    assert block.group(1) == schema.render(), (
        "docs/storage.md's layout block differs from fastinit.schema.render(); paste this:\n"
        + schema.render()
    )


def test_every_entry_is_rendered_and_found():
    text = schema.render()
    for g in schema.GROUPS:
        assert schema.find(schema.fill(g.path, **_values(g.path))) is g
        assert f"{g.path.rpartition('/')[2]}/  {g.description}" in text
        for d in g.datasets:
            assert schema.find(schema.fill(d.path, **_values(d.path))) is d
            assert re.search(rf"\n *{re.escape(d.name)} +{re.escape(d.shape)} +{re.escape(d.dtype)} ", text)
    assert len({g.path for g in schema.GROUPS}) == len(schema.GROUPS)


def _values(pattern):
    return {name: f"x{i}" for i, name in enumerate(re.findall(r"<(\w+)>", pattern))}


def test_paths_and_descriptions_fill_in_and_match():
    assert schema.HISTOGRAM_RUN.at(activation="tanh", init="std=0.01") == "/histogram/tanh/std=0.01"
    with pytest.raises(KeyError, match="<init>"):
        schema.HISTOGRAM_RUN.at(activation="tanh")
    sv = schema.SPECTRUM_DEPTH["singular_values"]
    text = sv.text(depth=8, samples=3, width=16)
    assert "of 8 layers, 3 draws of 16 one" in text and sv.describes(text)
    assert not sv.describes(text + " and more") and not sv.describes("singular values")
    with pytest.raises(KeyError, match="no dataset 'nope'"):
        schema.SWEEP["nope"]
    # the literal group wins over a pattern; a history run has the layout of a training run
    assert schema.find("/spectrum/training") is schema.SPECTRUM_TRAINING
    assert schema.find("/spectrum/tanh-orthogonal") is schema.SPECTRUM_RUN
    assert schema.find("/history/lr=0.1/xavier:sigmoid/seed=2/loss") is schema.TRAIN_RUN["loss"]
    assert schema.find("/train/he/seed=1") is schema.TRAIN_RUN
    assert schema.find("/train/he/nope") is None and schema.find("/elsewhere") is None


def test_check_and_label_catch_what_disagrees(tmp_path):
    path = tmp_path / "r.h5"
    with open_results(path) as f:
        g = replace_group(f, schema.THEORY.at(activation="tanh", sb2="0.05"))
        schema.label(g.create_dataset("sw2", data=np.ones(2)), schema.THEORY["sw2"])
        g.create_dataset("q_star", data=np.ones(2))  # no attrs
        g.create_dataset("chi1", data=np.ones(2, np.int64)).attrs.update(units="1", description="other")
        g.create_dataset("extra", data=np.ones(2))
        with pytest.raises(ValueError, match="labelled as /theory/<activation>/sb2=<sb2>/chi_c"):
            schema.label(g["sw2"], schema.THEORY["chi_c"])
        replace_group(f, "/unknown")
    with open_read(path) as f:
        problems = schema.check(f)
    where = [p.split(":")[0] for p in problems]
    assert where == [
        "/theory/tanh/sb2=0.05/chi1",
        "/theory/tanh/sb2=0.05/chi1",
        "/theory/tanh/sb2=0.05/extra",
        "/theory/tanh/sb2=0.05/q_star",
        "/theory/tanh/sb2=0.05/q_star",
        "/unknown",
    ], problems
    assert "description 'other'" in problems[0] and "dtype int64, the schema says float64" in problems[1]
    assert "does not declare" in problems[2] and "units None" in problems[3]


# --------------------------------------------------------------------------- the writers follow it


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One results set with a small run of every experiment, each with all its optional datasets."""
    from fastinit.experiments import histogram, meanfield, spectrum, spectrum_training, sweep, train
    from fastinit.experiments import profile as prof

    path = tmp_path_factory.mktemp("schema") / "r.h5"
    hist = histogram.run(
        histogram.HistogramConfig(
            "tanh", ("xavier", "std=1"), layers=2, units=8, samples=16, backend="numpy"
        ),
        progress=False,
    )
    spec = spectrum.run(
        spectrum.SpectrumConfig(activations=("tanh",), depths=(1, 2), width=8, samples=2, backend="numpy"),
        progress=False,
    )
    speed = spectrum_training.run(
        spectrum_training.TrainingConfig(
            depths=(2,),
            width=8,
            seeds=(0,),
            eval_every=5,
            eval_samples=50,
            max_steps=10,
            train_limit=200,
            backend="numpy",
        ),
        progress=False,
    )
    timed = prof.run(
        prof.ProfileConfig(backends=("numpy",), kernels=("relu",), quick=True, budget=0.0, repeats=1),
        progress=False,
    )
    with open_results(path) as f:
        histogram.write(f, hist)
        spectrum.write(f, spec)
        spectrum_training.write(f, speed)
        prof.write(f, timed)
    with open_results(path) as f:
        meanfield.write(f, meanfield.run(meanfield.TheoryConfig(sw2=(1.0, 2.0))))
    quiet = dict(progress=False, log=lambda message: None)
    data = synthetic()
    train.train(train.TrainConfig(**dict(TRAIN_SMALL, runs=("he",))), path, dataset=data, **quiet)
    train.train(
        train.TrainConfig(**dict(TRAIN_SMALL, runs=("xavier",), seeds=(0, 1))), path, dataset=data, **quiet
    )
    grid = dict(sw2=(1.0,), depths=(2,), width=8, steps=10, batch_size=16, eval_samples=50, train_limit=200)
    sweep.sweep(
        sweep.SweepConfig(**grid, checkpoints=(5,)), str(path), "g", executor="engine", progress=False
    )
    return path


def test_written_files_have_the_units_and_descriptions_of_the_schema(written):
    with open_read(written) as f:
        assert schema.check(f) == []


@pytest.mark.parametrize(
    "group, where",
    [
        (schema.HISTOGRAM_RUN, "/histogram/tanh/xavier"),
        (schema.SPECTRUM_DEPTH, "/spectrum/tanh-orthogonal/depth=2"),
        (schema.SPECTRUM_TRAINING_DEPTH, "/spectrum/training/gaussian/depth=2"),
        (schema.THEORY, "/theory/tanh/sb2=0.05"),
        (schema.PROFILE, "/profile/float32/numpy"),
        (schema.TRAIN_RUN, "/train/he"),
        (schema.TRAIN_RUN, "/train/xavier/seed=0"),
        (schema.SWEEP, "/sweep/g"),
        (schema.SWEEP_CHECKPOINTS, "/sweep/g/checkpoints"),
    ],
)
def test_every_dataset_the_schema_declares_is_written(written, group, where):
    with open_read(written) as f:
        g = f[where]
        assert group.matches(where)
        stored = sorted(name for name, obj in g.items() if isinstance(obj, h5py.Dataset))
    assert stored == sorted(d.name for d in group.datasets)


# --------------------------------------------------------------------------- fastinit show


def test_show_explains_each_kind_of_group_once(written):
    text = format_info(describe(written))
    assert text.count(schema.HISTOGRAM_RUN.description) == 1  # two inits, explained once
    assert text.count(schema.TRAIN_RUN.description) == 1  # /train/he and /train/xavier/seed=<s>
    for g in (schema.SWEEP, schema.SPECTRUM_TRAINING, schema.THEORY, schema.PROFILE):
        assert g.description in text
    assert "(not in the file: from the schema)" not in text  # every dataset carries its own


def test_show_gives_the_schema_units_of_datasets_written_without_them(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # as an older fastinit wrote a profile: columns without attrs
        g = f.create_group("/profile/float32/numpy")
        g.create_dataset("time_s", data=np.array([1e-3, 2e-3]))
        g.create_dataset("note", data=np.array([1.0, 2.0]))
    text = format_info(describe(path), stats=False)
    entry = schema.PROFILE["time_s"]
    assert f"[{entry.units}] {entry.description} (not in the file: from the schema)" in text
    assert "note" in text and text.count("from the schema") == 1  # a dataset the schema does not know
