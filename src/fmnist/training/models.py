"""Plain ``nn.Module``s: the seed autoencoder, the classifier on its encoder, and the VAE.

Usable without a Trainer; every module is rebuilt from a saved :class:`fmnist.config.Config`.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist.config import Config

FLAT = 32 * 3 * 3  # the encoder's last feature map, (32, 3, 3), flattened


def seed_encoder_trunk() -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 64): the seed's conv stack and first linear layer."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1),  # (B, 8, 14, 14)
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),  # (B, 16, 7, 7)
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=0),  # (B, 32, 3, 3)
        nn.ReLU(),
        nn.Flatten(),  # (B, 288)
        nn.Linear(FLAT, 64),
        nn.ReLU(),
    )


def seed_decoder(latent_dim: int) -> nn.Sequential:
    """(B, d) -> (B, 1, 28, 28) in [0, 1]."""
    return nn.Sequential(
        nn.Linear(latent_dim, 64),
        nn.ReLU(),
        nn.Linear(64, FLAT),
        nn.ReLU(),
        nn.Unflatten(1, (32, 3, 3)),
        nn.ConvTranspose2d(32, 16, 3, stride=2, output_padding=0),  # (B, 16, 7, 7)
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),  # (B, 8, 14, 14)
        nn.ReLU(),
        nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28)
        nn.Sigmoid(),
    )


def seed_encoder(latent_dim: int) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, d)."""
    return nn.Sequential(*seed_encoder_trunk(), nn.Linear(64, latent_dim))


class AutoEncoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.encoder = seed_encoder(config.latent_dim)
        self.decoder = seed_decoder(config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Head(nn.Module):
    """Linear(d -> h) ReLU Linear(h -> 10); ``features`` is the hidden activation."""

    def __init__(self, latent_dim: int, width: int, n_classes: int = 10):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU())
        self.out = nn.Linear(width, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class Classifier(nn.Module):
    """The AE's encoder (frozen unless ``config.unfreeze``) followed by a small head."""

    def __init__(self, config: Config, encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else seed_encoder(config.latent_dim)
        self.head = Head(config.latent_dim, config.head_width)
        self.frozen = not config.unfreeze
        if self.frozen:
            self.encoder.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 10)."""
        return self.head(self.encoder(x))

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:  # a frozen encoder is a fixed function: no dropout or norm updates
            self.encoder.eval()
        return self


class VAE(nn.Module):
    """The seed's VAE: encoder trunk -> Linear(64 -> 16) -> mean and log-variance heads."""

    def __init__(self, config: Config):
        super().__init__()
        d = config.latent_dim
        self.trunk = nn.Sequential(*seed_encoder_trunk(), nn.Linear(64, 16))
        self.mean = nn.Linear(16, d)
        self.logvar = nn.Linear(16, d)
        self.decoder = seed_decoder(d)
        # log of the Gaussian likelihood's standard deviation, one scalar shared by all pixels
        self.log_scale = nn.Parameter(torch.zeros(()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.mean(h), self.logvar(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction mean, z, mu, logvar); z by reparameterisation."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), z, mu, logvar


def build(model: str, config: Config) -> nn.Module:
    return {"ae": AutoEncoder, "classifier": Classifier, "vae": VAE}[model](config)
