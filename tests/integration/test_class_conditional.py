"""Class-conditional generation: ``Bundle.generate(..., label=k)`` draws the class's own KDE,
``fmnist generate --class`` takes a label number or a name in any case, and format-1 bundles
(no per-class samplers) still load and serve everything else, refusing ``--class`` in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.contract.samplers import kde_sample
from fmnist.errors import InputError
from fmnist.runtime.bundle import Bundle
from tests import toybundle as toy

SEED_BUNDLE = Path(__file__).resolve().parents[2] / "benchmarks" / "bundles" / "seed"


@pytest.fixture(scope="module")
def format1(tmp_path_factory) -> Path:
    return toy.build_toy_bundle(tmp_path_factory.mktemp("format1") / "bundle", format_version=1)


def test_a_class_draws_from_that_class_kde_alone(toy_bundle):
    model = Bundle(toy_bundle, "cpu")
    for k in (0, 3, 9):
        z = model.sample_latents(50, "kde", seed=2, label=k)
        want = kde_sample(toy.SAMPLERS["kde_class_points"][k], 0.01, 50, 2)
        assert np.array_equal(z, want) and np.abs(z[:, 0] - k / 10).max() < 0.05
        assert np.allclose(model.generate(50, "kde", seed=2, label=k), toy.toy_decode(want), atol=1e-6)
    assert not np.array_equal(model.sample_latents(5, "kde", 0, label=1), model.sample_latents(5, "kde", 0, label=2))


@pytest.mark.parametrize(
    ("sampler", "label", "words"),
    [
        ("vae", 1, "sampler vae cannot draw one class: use kde"),
        ("kde", 10, "from 0 to 9, not 10"),
        ("kde", -1, "not -1"),
    ],
)
def test_a_class_the_sampler_cannot_draw_is_an_input_error(toy_bundle, sampler, label, words):
    with pytest.raises(InputError, match=words):
        Bundle(toy_bundle, "cpu").generate(3, sampler, label=label)


def test_a_format_1_bundle_serves_everything_but_a_class(format1):
    model = Bundle(format1, "cpu", lazy=False)
    assert model.format_version == 1 and not model.has_classes()
    for sampler in ("kde", "kde-pca", "vae"):
        assert model.generate(2, sampler).shape == (2, 28, 28)
    with pytest.raises(InputError) as caught:
        model.generate(2, "kde", label=7)
    assert "(format 1) has no per-class samplers" in str(caught.value)
    assert "python -m fmnist.export.refit BUNDLE_DIR" in str(caught.value)


def test_the_seed_bundle_stays_format_1_and_loads(tmp_path):
    model = Bundle(SEED_BUNDLE, "cpu", lazy=False)
    assert model.format_version == 1
    assert model.generate(2).shape == (2, 28, 28) and model.classify(np.zeros((1, 28, 28))).shape == (1, 10)


@pytest.mark.parametrize("given", ["Sneaker", "sneaker", "SNEAKER", "7"])
def test_generate_class_takes_a_number_or_a_name_in_any_case(toy_bundle, tmp_path, capsys, given):
    from fmnist.cli.inference import run

    out = tmp_path / "s.npy"
    assert run(["generate", "--n", "4", "--class", given, "--out", str(out), "--artifacts", str(toy_bundle)]) == 0
    assert capsys.readouterr().out == f"wrote 4 kde samples of Sneaker to {out}\n"
    want = toy.toy_decode(kde_sample(toy.SAMPLERS["kde_class_points"][7], 0.01, 4, 0))
    assert np.allclose(np.load(out), want, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--class", "Sneakers"], "unknown class 'Sneakers': give a label number or a class name (0 T-shirt/top, "),
        (["--class", "7", "--sampler", "vae"], "sampler vae cannot draw one class: use kde for a class"),
    ],
)
def test_generate_class_refuses_in_one_line(toy_bundle, tmp_path, capsys, args, words):
    from fmnist.cli.inference import run

    out = tmp_path / "s.png"
    assert run(["generate", *args, "--out", str(out), "--artifacts", str(toy_bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fmnist: error: {words}") and len(err.splitlines()) == 1 and not out.exists()


def test_generate_class_on_a_format_1_bundle_names_the_export_that_adds_it(format1, tmp_path, capsys):
    from fmnist.cli.inference import run

    out = tmp_path / "s.png"
    assert run(["generate", "--class", "Sneaker", "--out", str(out), "--artifacts", str(format1)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"fmnist: error: bundle {format1} (format 1) has no per-class samplers: re-export it with `fmnist export`, "
        "or add them with `python -m fmnist.export.refit BUNDLE_DIR`\n"
    )
    assert not out.exists()
    assert run(["generate", "--out", str(out), "--artifacts", str(format1)]) == 0  # the rest still works


def test_evaluate_figures_per_class_beside_the_reconstructions(toy_bundle, format1):
    from fmnist.runtime.evaluation import class_conditional_quality

    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 28, 28)).astype(np.float32), np.repeat(np.arange(10), 4)
    figures = class_conditional_quality(Bundle(toy_bundle, "cpu"), images, labels, n=20)
    assert figures["sampler"] == "kde" and figures["samples_per_class"] == 20
    assert list(figures["classes"]) == list(toy.CLASS_NAMES)
    for c in figures["classes"].values():
        assert 0 <= c["sample_share"] <= 1 and 0 <= c["reconstruction_share"] <= 1 and c["frechet_distance"] >= 0
        if c["reconstruction_share"]:
            assert c["share_ratio"] == pytest.approx(c["sample_share"] / c["reconstruction_share"])
    assert class_conditional_quality(Bundle(format1, "cpu"), images, labels, n=20) is None


def test_evaluate_draws_as_many_per_class_samples_as_the_test_set_holds_per_class(toy_bundle, monkeypatch):
    """1,000 per class on the official test set (the cap); a cut-down one is not judged against 10,000."""
    from fmnist.runtime import evaluation

    model, rng = Bundle(toy_bundle, "cpu"), np.random.default_rng(0)
    images, labels = rng.random((50, 28, 28)).astype(np.float32), np.repeat(np.arange(10), 5)
    assert evaluation.class_conditional_quality(model, images, labels)["samples_per_class"] == 5
    assert evaluation.class_conditional_quality(model, images, labels, n=3)["samples_per_class"] == 3
    monkeypatch.setattr(evaluation, "CLASS_SAMPLES", 4)
    assert evaluation.class_conditional_quality(model, images, labels)["samples_per_class"] == 4


@pytest.fixture(scope="module")
def api(toy_bundle):
    from fastapi.testclient import TestClient

    from fmnist.serve.app import create_app

    with TestClient(create_app(toy_bundle)) as client:
        yield client


@pytest.mark.parametrize("given", [7, "Sneaker"])
def test_generate_route_draws_one_class_by_label_or_name(api, given):
    body = {"n": 4, "seed": 5, "format": "list", "class": given}
    answer = api.post("/v1/generate", json=body)
    assert answer.status_code == 200, answer.text
    want = toy.toy_decode(kde_sample(toy.SAMPLERS["kde_class_points"][7], 0.01, 4, 5))
    got = np.array([r["image"] for r in answer.json()["results"]])
    assert got.shape == (4, 28, 28) and np.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"class": "Sandle"}, 422, "Sneaker"),  # the schema lists the names
        ({"class": "sneaker"}, 422, "Sneaker"),
        ({"class": "7"}, 422, ""),
        ({"class": 10}, 422, ""),
        ({"class": "Bag", "sampler": "vae"}, 400, "cannot draw one class"),
        ({"class": True}, 422, ""),
    ],
)
def test_generate_route_refuses_a_bad_class_in_one_line(api, body, status, words):
    answer = api.post("/v1/generate", json={"n": 2, "format": "list", **body})
    assert answer.status_code == status, answer.text
    assert words in str(answer.json().get("error", answer.json()))


def test_generate_route_on_a_format1_bundle_names_the_export(format1):
    from fastapi.testclient import TestClient

    from fmnist.serve.app import create_app

    with TestClient(create_app(format1)) as client:
        plain = client.post("/v1/generate", json={"n": 2, "format": "list"})
        assert plain.status_code == 200
        answer = client.post("/v1/generate", json={"n": 2, "format": "list", "class": "Bag"})
    assert answer.status_code == 400 and "export" in answer.json()["error"]


def test_the_shipped_bundle_generates_a_class(tmp_path, monkeypatch, capsys):
    from fmnist import artifacts
    from fmnist.cli.inference import run

    monkeypatch.delenv("FMNIST_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    model = Bundle(artifacts.default_bundle_dir(), "cpu", lazy=False)
    assert model.format_version == 2 and model.has_classes()
    assert run(["generate", "--n", "16", "--class", "Sneaker"]) == 0
    assert capsys.readouterr().out == "wrote 16 kde samples of Sneaker to samples.png\n"
    assert (tmp_path / "samples.png").is_file()
