"""Bundle on the fixed-weight toy bundle: exact answers, lazy sessions, providers, threads."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fmnist.errors import InputError
from fmnist.runtime import bundle
from fmnist.runtime.bundle import Bundle
from tests import toybundle as toy


@pytest.fixture
def images() -> np.ndarray:
    x = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    x[0], x[1] = 0.0, 1.0  # black, white
    x[2, 14:] = 0.0  # top-heavy
    x[3, :14] = 0.0  # bottom-heavy
    return x


def test_graphs_compute_the_toy_closed_forms(toy_bundle, images):
    model = Bundle(toy_bundle, provider="cpu")
    assert model.latent_dim == 2 and len(model.class_names) == 10 and model.provider == "CPUExecutionProvider"
    assert np.allclose(model.encode(images), toy.toy_encode(images), atol=1e-6)
    assert np.allclose(model.reconstruct(images), toy.toy_decode(toy.toy_encode(images)), atol=1e-6)
    p = model.classify(images)
    assert p.shape == (6, 10) and np.allclose(p, toy.toy_probabilities(images), atol=1e-6)
    assert p.argmax(1)[:4].tolist() == [0, 9, 0, 1]
    assert p[0] == pytest.approx(np.full(10, 0.1))
    assert model.features(images).shape == (6, 3)


def test_sessions_are_created_lazily_and_cached(toy_bundle, images):
    model = Bundle(toy_bundle, provider="cpu")
    assert model._sessions == {}
    model.classify(images)
    assert set(model._sessions) == {"classifier"}
    first = model.session("classifier")
    model.classify(images)
    assert model.session("classifier") is first


def test_batches_larger_than_one_run_are_split_and_joined(toy_bundle, monkeypatch):
    monkeypatch.setattr(bundle, "BATCH", 4)
    x = np.random.default_rng(1).random((10, 28, 28)).astype(np.float32)
    assert np.allclose(Bundle(toy_bundle, "cpu").encode(x), toy.toy_encode(x), atol=1e-6)


def test_generate_decodes_the_sampled_latents(toy_bundle):
    model = Bundle(toy_bundle, provider="cpu")
    for sampler, graph in (("kde", "decoder"), ("kde-pca", "decoder"), ("vae", "vae_decoder")):
        z = model.sample_latents(5, sampler, seed=4)
        assert z.shape == (5, 2)
        x = model.generate(5, sampler, seed=4)
        assert x.shape == (5, 28, 28) and x.dtype == np.float32
        assert np.allclose(x, toy.toy_decode(z, graph), atol=1e-6)
        assert np.array_equal(x, model.generate(5, sampler, seed=4))
    assert np.array_equal(model.sample_latents(3, "vae", 9), np.random.default_rng(9).standard_normal((3, 2)))


@pytest.mark.parametrize(("n", "sampler"), [(0, "kde"), (-3, "kde"), (10_001, "kde"), (2, "gan")])
def test_generate_refuses_bad_requests(toy_bundle, n, sampler):
    with pytest.raises(InputError):
        Bundle(toy_bundle, provider="cpu").generate(n, sampler)


def test_vae_elbo_is_the_single_sample_gaussian_elbo(toy_bundle, images):
    model = Bundle(toy_bundle, provider="cpu")
    mean, logvar = toy.toy_encode(images), np.broadcast_to(toy.LOGVAR, (6, 2))
    eps = np.random.default_rng(5).standard_normal((6, 2)).astype(np.float32)
    recon = toy.toy_decode(mean + np.exp(0.5 * logvar) * eps, "vae_decoder")
    s = toy.LOG_SCALE
    ll = (-0.5 * ((images - recon) / math.exp(s)) ** 2 - s - 0.5 * math.log(2 * math.pi)).reshape(6, -1).sum(1)
    kl = -0.5 * (1 + logvar - mean**2 - np.exp(logvar)).sum(1)
    assert np.allclose(model.vae_elbo(images, seed=5), ll - kl, rtol=1e-5)


def test_provider_auto_is_silent_without_cuda(toy_bundle, capsys):
    model = Bundle(toy_bundle, provider="auto")
    model.encode(np.zeros((1, 28, 28), np.float32))
    assert model.provider == "CPUExecutionProvider" and capsys.readouterr().err == ""


def test_provider_cuda_without_cuda_falls_back_with_one_notice(toy_bundle, capsys):
    model = Bundle(toy_bundle, provider="cuda")
    model.encode(np.zeros((1, 28, 28), np.float32))
    err = capsys.readouterr().err
    assert model.provider == "CPUExecutionProvider"
    assert err.count("\n") == 1 and "no CUDA provider" in err and "using the CPU" in err


def test_a_cuda_provider_that_fails_to_start_falls_back_with_one_notice(toy_bundle, capsys, monkeypatch):
    """onnxruntime claims CUDA but cannot start it (here: a CPU-only build told otherwise)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime really has CUDA")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = Bundle(toy_bundle, provider="auto")
    assert model.provider == "CUDAExecutionProvider"  # chosen; not yet started
    x = np.zeros((1, 28, 28), np.float32)
    model.encode(x), model.classify(x)
    err = capsys.readouterr().err
    assert model.provider == "CPUExecutionProvider"
    assert err.count("\n") == 1 and "CUDA provider failed to start" in err


def test_unknown_provider_is_an_input_error(toy_bundle):
    with pytest.raises(InputError, match="--provider"):
        Bundle(toy_bundle, provider="tpu")


def test_one_model_serves_many_threads(toy_bundle):
    model = Bundle(toy_bundle, provider="cpu")
    batches = [np.random.default_rng(i).random((i + 1, 28, 28)).astype(np.float32) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(model.classify, batches))
        latents = list(pool.map(model.encode, batches))
    for x, p, z in zip(batches, got, latents, strict=True):
        assert np.allclose(p, toy.toy_probabilities(x), atol=1e-6)
        assert np.allclose(z, toy.toy_encode(x), atol=1e-6)
    assert set(model._sessions) == {"classifier", "encoder"}


def test_wrong_shapes_and_empty_batches_are_input_errors(toy_bundle):
    model = Bundle(toy_bundle, provider="cpu")
    with pytest.raises(InputError, match="shape"):
        model.classify(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(InputError, match="shape"):
        model.decode(np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match="no images"):
        model.classify(np.zeros((0, 28, 28), np.float32))


def test_top_classes_ranks_and_breaks_ties_like_argmax():
    p = np.array([[0.1] * 10, [0.0, 0.2, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3]], np.float32)
    names = [f"c{i}" for i in range(10)]
    ranked = bundle.top_classes(p, names, 3)
    assert [[c["label"] for c in r] for r in ranked] == [[0, 1, 2], [3, 9, 1]]
    assert ranked[1][0] == {"label": 3, "class": "c3", "probability": pytest.approx(0.5)}
