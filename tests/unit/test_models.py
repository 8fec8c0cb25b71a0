import math

import pytest
import torch

from fmnist.config import Config
from fmnist.training import losses, models


@pytest.mark.parametrize(
    ("arch", "low", "high"), [("seed", 49_000, 51_000), ("wide", 870_000, 880_000), ("medium", 850_000, 860_000)]
)
def test_autoencoder_shapes_and_size(arch, low, high):
    ae = models.AutoEncoder(Config(latent_dim=8, arch=arch)).eval()
    x = torch.rand(5, 1, 28, 28)
    assert ae.encoder(x).shape == (5, 8)
    out = ae(x)
    assert out.shape == (5, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    n_params = sum(p.numel() for p in ae.parameters())
    assert low < n_params < high, n_params


@pytest.mark.parametrize("arch", ["seed", "wide", "medium"])
def test_vae_shapes(arch):
    vae = models.VAE(Config(latent_dim=3, arch=arch))
    recon, z, mu, logvar = vae(torch.rand(4, 1, 28, 28))
    assert recon.shape == (4, 1, 28, 28) and z.shape == mu.shape == logvar.shape == (4, 3)


def test_wide_classifier_is_built_on_the_wide_encoder():
    clf = models.Classifier(Config(arch="wide", unfreeze=True))
    assert clf(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in clf.encoder.modules())


def test_vae_encoder_gets_gradient_from_the_reconstruction_term():
    torch.manual_seed(0)
    vae = models.VAE(Config(latent_dim=4))
    x = torch.rand(8, 1, 28, 28)
    recon, _, mu, logvar = vae(x)
    _, rec, _ = losses.elbo_terms(x, recon, mu, logvar, vae.log_scale)
    (-rec.mean()).backward()  # reconstruction term only: no KL path to the encoder
    assert vae.mean.weight.grad.abs().sum() > 0
    assert vae.logvar.weight.grad.abs().sum() > 0
    assert vae.trunk[0].weight.grad.abs().sum() > 0


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4) * 0.5
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 4)
    zeros = torch.zeros_like(z)
    mc = (losses.diag_gaussian_log_prob(z, mu, logvar) - losses.diag_gaussian_log_prob(z, zeros, zeros)).mean(0)
    assert torch.allclose(losses.kl_to_standard_normal(mu, logvar), mc, atol=0.02)


def test_gaussian_log_likelihood_matches_torch_distributions():
    x, mean = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    log_scale = torch.tensor(-1.3)
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(losses.gaussian_log_likelihood(x, mean, log_scale), expected, atol=1e-3)


def test_importance_weighted_bound_is_at_least_the_elbo():
    torch.manual_seed(0)
    vae = models.VAE(Config(latent_dim=4))
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        elbos = []
        for _ in range(50):
            recon, _, mu, logvar = vae(x)
            elbos.append(losses.elbo_terms(x, recon, mu, logvar, vae.log_scale)[0])
        elbo = torch.stack(elbos).mean(0)
    iw = losses.importance_weighted_log_px(vae, x, k=200)
    # the bound holds in expectation; per image the Monte-Carlo noise of both is ~0.01 nats
    assert iw.mean() > elbo.mean()
    assert (iw > elbo - 0.05).all()
    assert math.isfinite(iw.sum().item())


def test_ae_loss_separates_pure_mse_from_the_l1_penalty():
    ae = models.AutoEncoder(Config())
    x = torch.rand(4, 1, 28, 28)
    loss, mse = losses.ae_loss(ae(x), x, ae, l1=1e-3)
    assert loss.item() == pytest.approx(mse.item() + 1e-3 * losses.l1_penalty(ae).item(), rel=1e-5)
    loss0, mse0 = losses.ae_loss(ae(x), x, ae, l1=0.0)
    assert loss0 is mse0


@pytest.mark.parametrize("arch", ["seed", "wide", "medium"])
def test_frozen_classifier_trains_only_its_head(arch):
    torch.manual_seed(0)
    clf = models.Classifier(Config(arch=arch, unfreeze=False)).train()
    before = {k: v.clone() for k, v in clf.encoder.state_dict().items()}
    opt = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad])
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(torch.rand(8, 1, 28, 28)), torch.randint(0, 10, (8,))).backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in clf.encoder.state_dict().items())
    assert all(not p.requires_grad for p in clf.encoder.parameters())


def test_the_optimal_log_scale_maximises_the_likelihood():
    torch.manual_seed(0)
    x, mean = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    best = losses.optimal_log_scale(x, mean)
    assert best.item() == pytest.approx(0.5 * math.log(((x - mean) ** 2).mean().item()), rel=1e-5)
    at = [losses.gaussian_log_likelihood(x, mean, best + d).sum().item() for d in (-0.05, 0.0, 0.05)]
    assert at[1] > at[0] and at[1] > at[2]


def test_the_fine_tuned_classifier_has_dropout_and_the_ae_encoder_none():
    fine_tuned = models.Classifier(Config(unfreeze=True, dropout=0.3))
    dropouts = [m.p for m in fine_tuned.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.3]
    ae = models.AutoEncoder(Config())
    assert [m.p for m in ae.encoder.modules() if isinstance(m, torch.nn.Dropout)] == [0.0]
    fine_tuned.encoder.load_state_dict(ae.encoder.state_dict())  # same parameters: the AE's weights fit


@pytest.mark.parametrize("arch", ["seed", "medium"])
def test_a_vae_started_from_the_ae_decodes_its_means_as_the_ae_does(arch):
    torch.manual_seed(0)
    config = Config(arch=arch, latent_dim=4)
    ae, vae = models.AutoEncoder(config).eval(), models.VAE(config).eval()
    models.start_vae_from_ae(vae, ae)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(vae.decoder(ae.encoder(x)), ae(x))
        if arch == "medium":  # no hidden layer: the mean head is the AE's last encoder layer
            assert torch.allclose(vae.encode(x)[0], ae.encoder(x))


def test_the_head_model_trains_on_noisy_latents_and_validates_on_clean_ones():
    from fmnist.training.modules import HeadModule

    torch.manual_seed(0)
    batch = (torch.randn(64, 8) * 3, torch.randint(0, 10, (64,)))
    noisy = HeadModule(Config(head_noise=0.5).to_dict())
    clean = HeadModule(Config(head_noise=0.0).to_dict())
    clean.load_state_dict(noisy.state_dict())
    noisy.train(), clean.train()
    assert noisy._metrics(batch)["loss"] != noisy._metrics(batch)["loss"]
    assert clean._metrics(batch)["loss"] == clean._metrics(batch)["loss"]
    noisy.eval()
    assert noisy._metrics(batch)["loss"] == clean._metrics(batch)["loss"]


def test_head_noise_on_a_one_latent_batch_is_finite():
    from fmnist.training.modules import HeadModule

    module = HeadModule(Config(head_noise=0.5).to_dict())
    module.train()
    assert torch.isfinite(module._metrics((torch.randn(1, 8), torch.tensor([3])))["loss"])
