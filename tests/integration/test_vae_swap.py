"""A run's AE rebuilt from a bundle's graphs (fmnist.export.ae_from_bundle), and a trained VAE put
into a bundle in place of its own (fmnist.export.refit --vae-run): small networks, the toy bundle,
random images; nothing trains."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from fmnist import artifacts, runs
from fmnist.config import Config
from fmnist.errors import ConfigError
from fmnist.export import ae_from_bundle, refit
from fmnist.export.graphs import export_graph
from fmnist.runtime.bundle import Bundle
from fmnist.training.modules import AEModule, VAEModule, load_module
from tests import toybundle as toy
from tests.toybundle import build_toy_bundle, retamper


@pytest.fixture(scope="module")
def ae_bundle(tmp_path_factory):
    """The toy bundle with the graphs of a medium AE at the toy's d (random weights, batch norms
    away from identity), exported as ``fmnist export`` exports them; (folder, the AE module)."""
    torch.manual_seed(0)
    config = Config(arch="medium", latent_dim=toy.D).for_model("ae").to_dict()
    module = AEModule(config)
    ae = module.model.eval()
    for layer in ae.modules():
        if isinstance(layer, nn.BatchNorm2d):
            for tensor, low, high in ((layer.running_mean, -0.5, 0.5), (layer.running_var, 0.5, 2.0)):
                tensor.uniform_(low, high)
            with torch.no_grad():
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)
    folder = build_toy_bundle(tmp_path_factory.mktemp("ae") / "bundle")
    images = torch.rand(8, 1, 28, 28)
    export_graph(ae.encoder, images, folder / "encoder.onnx", "image", ["latent"])
    with torch.inference_mode():
        latents = ae.encoder(images)
    export_graph(ae.decoder, latents, folder / "decoder.onnx", "latent", ["image"])
    retamper(folder, lambda m: m.update(configs={"ae": config}))
    return folder, module


def _outputs(ae, images):
    with torch.inference_mode():
        latents = ae.encoder(images)
        return latents, ae.decoder(latents)


def test_the_rebuilt_ae_equals_the_bundles_graphs(ae_bundle, tmp_path):
    folder, original = ae_bundle
    run = tmp_path / "run"
    train, check = torch.rand(64, 1, 28, 28), torch.rand(16, 1, 28, 28)
    source = ae_from_bundle.write_run(folder, artifacts.load_manifest(folder), run, train, check, tmp_path)
    assert source["max_scaled_diff_vs_onnx"] <= ae_from_bundle.TOLERANCE
    assert source == ae_from_bundle.recorded_source(run) and source["norm_statistics_images"] == 64
    assert json.loads((run / runs.RECORD_FILE).read_text())["models"] == ["ae"]
    rebuilt = load_module("ae", str(runs.checkpoint(run, "ae"))).model.eval()
    for got, want in zip(_outputs(rebuilt, check), _outputs(original.model, check), strict=True):
        assert np.abs(got.numpy() - want.numpy()).max() <= 1e-5
    bundle = Bundle(folder, "cpu", lazy=False)
    assert np.abs(bundle.encode(check.squeeze(1).numpy()) - _outputs(rebuilt, check)[0].numpy()).max() <= 1e-5


def test_the_rebuilt_ae_trains_on_as_it_evaluates(ae_bundle, tmp_path):
    """In training mode its batch norms standardise with the batch's statistics and restore the
    fitted scale: on the images they were fitted on, the same outputs as in evaluation."""
    folder, _ = ae_bundle
    train = torch.rand(64, 1, 28, 28)
    module = ae_from_bundle.rebuild(folder, artifacts.load_manifest(folder), train)
    evaluated = _outputs(module.model.eval(), train)[1]
    trained = _outputs(module.model.train(), train)[1]
    assert np.abs(trained.numpy() - evaluated.numpy()).max() <= 1e-3


def test_a_bundle_without_an_ae_is_refused_in_one_line(toy_bundle, tmp_path, capsys):
    run = tmp_path / "run"
    assert ae_from_bundle.main([str(toy_bundle), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: the bundle's manifest has no configs.ae") and err.count("\n") == 1
    assert not run.exists()


def _vae(latent_dim: int = toy.D) -> VAEModule:
    torch.manual_seed(1)
    config = Config(arch="seed", latent_dim=latent_dim, vae_likelihood="logistic").for_model("vae")
    return VAEModule(config.to_dict())


SUMMARY = {"test_elbo": 1.5, "test_log_px": 2.5, "best_epoch": 2, "wall_time_s": 3.5}


def test_put_vae_swaps_the_vae_graphs_and_keeps_every_other_file(toy_bundle, tmp_path):
    folder = shutil.copytree(toy_bundle, tmp_path / "bundle")
    before = {name: (folder / name).read_bytes() for name in artifacts.load_manifest(folder)["files"]}
    vae, check = _vae().eval(), torch.rand(8, 1, 28, 28)
    staged = []

    def measure(tmp):  # what the staged bundle's VAE encoder gives, as evaluate would read it
        staged.append(tmp)
        mean, _ = Bundle(tmp, "cpu", lazy=False).vae_encode(check.squeeze(1).numpy())
        return {"vae_mean_0": float(mean[0, 0])}

    manifest = refit.put_vae(folder, vae, SUMMARY, {"command": "test"}, check, measure)
    with torch.inference_mode():
        want = vae.model.encode(check)[0][0, 0].item()
    assert manifest["metrics"] == {"vae_mean_0": pytest.approx(want, abs=1e-5)}
    assert json.loads(json.dumps(manifest)) == artifacts.load_manifest(folder) and not staged[0].exists()
    changed = {name for name, data in before.items() if (folder / name).read_bytes() != data}
    assert changed == {"vae_encoder.onnx", "vae_decoder.onnx"}
    assert manifest["vae"]["likelihood"] == "logistic" and len(manifest["vae"]["log_scales"]) == 28 * 28
    assert manifest["configs"]["vae"]["vae_likelihood"] == "logistic"
    assert manifest["training_metrics"]["vae_elbo"] == 1.5 and manifest["training_metrics"]["vae_log_px"] == 2.5
    assert manifest["provenance"]["vae"] == {"command": "test"} and manifest["provenance"]["best_epochs"]["vae"] == 2
    assert manifest["graphs"]["vae_decoder"]["max_scaled_diff_vs_torch"] <= 1e-5
    assert manifest["graphs"]["decoder"] == artifacts.load_manifest(toy_bundle)["graphs"]["decoder"]
    assert Bundle(folder, "cpu", lazy=False).generate(2, "vae").shape == (2, 28, 28)
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left


def test_put_vae_refuses_another_latent_size_and_changes_nothing(toy_bundle, tmp_path):
    folder = shutil.copytree(toy_bundle, tmp_path / "bundle")
    with pytest.raises(ConfigError, match="latent_dim 3, the bundle 2: train it with --latent-dim 2"):
        refit.put_vae(folder, _vae(3), SUMMARY, {}, torch.rand(4, 1, 28, 28), lambda tmp: {})
    assert artifacts.load_manifest(folder) == artifacts.load_manifest(toy_bundle)


def test_a_vae_run_without_a_vae_is_refused_in_one_line(toy_bundle, tmp_path, capsys):
    run = tmp_path / "run"
    assert refit.main([str(toy_bundle), "--vae-run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"fmnist: error: --vae-run {run}: {run}/vae/best.ckpt not found; train a VAE there first "
        f"(fmnist train --model vae --run-dir {run})\n"
    )
