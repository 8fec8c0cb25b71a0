"""Every graph and sampler the contract declares is known to every stage: export, the bundle
checks, the runtime, the server's schema and the CLI. A new declaration without its code in one
of them fails here, naming it."""

import numpy as np
import pytest

from fmnist import artifacts
from fmnist.contract import GRAPHS, SAMPLERS, parse_class
from fmnist.contract import samplers as sampler_contract
from fmnist.errors import BundleError, InputError
from fmnist.runtime.bundle import Bundle
from fmnist.runtime.sampling import load_samplers
from tests import toybundle as toy


@pytest.mark.parametrize("graph", GRAPHS, ids=lambda g: g.name)
def test_every_graph_is_exported_checked_and_run_by_its_declared_names(graph, toy_bundle):
    from fmnist.export.graphs import MODULES

    assert graph.name in MODULES  # export builds it
    assert artifacts.GRAPHS[graph.name] == graph.file  # the checks require it
    shape = [3 if d == "N" else toy.D if d == "d" else d for d in graph.inputs[0].shape]
    out = Bundle(toy_bundle, "cpu").run(graph.name, np.zeros(shape, np.float32))
    assert list(out) == [t.name for t in graph.outputs]  # the runtime reads every output by name
    for tensor in graph.outputs:
        sizes = {"d": toy.D, "h": toy.H}
        assert out[tensor.name].shape == (3, *(sizes.get(d, d) for d in tensor.shape[1:]))


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_every_sampler_is_fitted_checked_drawn_served_and_offered(sampler, toy_bundle, tmp_path, capsys):
    from fmnist.cli.inference import build_parser, run
    from fmnist.serve.app import create_app

    arrays = dict(np.load(toy_bundle / artifacts.SAMPLERS_NPZ))
    for declared in (*sampler.arrays, *sampler.by_class):  # the checks refuse the file without each array
        del arrays[declared.name]
        with pytest.raises(BundleError, match=f"holds no array '{declared.name}'"):
            load_samplers(tmp_path / "s.npz", toy.D, 2, _npz(tmp_path, arrays))
        arrays = dict(np.load(toy_bundle / artifacts.SAMPLERS_NPZ))
    model = Bundle(toy_bundle, "cpu")
    assert model.generate(4, sampler.name, seed=1).shape == (4, 28, 28)
    if sampler.draw_class is not None:
        assert model.generate(4, sampler.name, seed=1, label=3).shape == (4, 28, 28)
    schema = create_app(toy_bundle).openapi()["components"]["schemas"]["GenerateRequest"]
    assert sampler.name in schema["properties"]["sampler"]["enum"]
    flag = next(a for a in build_parser("generate")._actions if "--sampler" in a.option_strings)
    assert f"{sampler.name}: " in flag.help or f"{sampler.name} (default): " in flag.help
    out = tmp_path / "s.png"
    assert (
        run(["generate", "--n", "2", "--sampler", sampler.name, "--out", str(out), "--artifacts", str(toy_bundle)]) == 0
    )
    assert out.is_file() and f"2 {sampler.name} samples" in capsys.readouterr().out


def test_export_writes_every_declared_sampler_array(tmp_path):
    from fmnist.export.samplers import fit_samplers, save_samplers

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    latents = rng.normal(size=(300, 3)) + labels[:, None]
    fitted = fit_samplers(latents, 2, 200, 0, labels, tuple(f"c{k}" for k in range(10)))
    save_samplers(fitted, tmp_path)
    arrays = load_samplers(tmp_path / artifacts.SAMPLERS_NPZ, 3, artifacts.FORMAT_VERSION)
    declared = {a.name for s in SAMPLERS for a in (*s.arrays, *s.by_class)}
    assert set(arrays) == declared
    assert arrays["kde_class_points"].shape == (10, 30, 3)  # at most 200 each: every point of its class
    for k in range(10):  # each class's KDE holds that class's latents only
        assert np.isin(arrays["kde_class_points"][k], latents[labels == k]).all()


def _npz(tmp_path, arrays) -> bytes:
    np.savez(tmp_path / "s.npz", **arrays)
    return (tmp_path / "s.npz").read_bytes()


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (7, 7),
        ("7", 7),
        ("Sneaker", 7),
        ("sneaker", 7),
        (" SNEAKER ", 7),
        ("t-shirt/top", 0),
        ("0", 0),
        ("Ankle boot", 9),
    ],
)
def test_parse_class_takes_a_label_number_or_a_name_in_any_case(value, label):
    from fmnist import CLASS_NAMES

    assert parse_class(value, CLASS_NAMES) == label


@pytest.mark.parametrize("value", ["10", "-1", "Sneakers", "", "boot"])
def test_parse_class_refuses_others_listing_the_names(value):
    from fmnist import CLASS_NAMES

    with pytest.raises(InputError) as caught:
        parse_class(value, CLASS_NAMES)
    assert "7 Sneaker" in str(caught.value) and "\n" not in str(caught.value)


def test_sampler_names_others_import_come_from_the_declarations():
    from fmnist.runtime import sampling

    assert sampling.SAMPLERS == tuple(s.name for s in SAMPLERS) == sampler_contract.NAMES
    assert sampling.DEFAULT_SAMPLER in sampling.SAMPLERS
