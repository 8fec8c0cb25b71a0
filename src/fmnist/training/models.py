"""Plain ``nn.Module``s: the seed autoencoder, the classifier on its encoder, and the VAE.

Usable without a Trainer; every module is rebuilt from a saved :class:`fmnist.config.Config`.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist.config import Config

FLAT = 32 * 3 * 3  # the seed encoder's last feature map, (32, 3, 3), flattened
WIDE_FLAT = 128 * 3 * 3


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


def _conv(c_in: int, c_out: int, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()]


def _deconv(c_in: int, c_out: int, padding: int, output_padding: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=padding, output_padding=output_padding),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def wide_encoder_trunk() -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 256): four times the seed's channels, two convolutions per scale and
    batch norm; the dropout regularises the end-to-end (``--unfreeze``) classifier."""
    return nn.Sequential(
        *_conv(1, 32),
        *_conv(32, 32, stride=2),  # (B, 32, 14, 14)
        *_conv(32, 64),
        *_conv(64, 64, stride=2),  # (B, 64, 7, 7)
        *_conv(64, 128, stride=2, padding=0),  # (B, 128, 3, 3)
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(WIDE_FLAT, 256),
        nn.ReLU(),
    )


def wide_decoder(latent_dim: int) -> nn.Sequential:
    """(B, d) -> (B, 1, 28, 28) in [0, 1]: the wide encoder mirrored."""
    return nn.Sequential(
        nn.Linear(latent_dim, 256),
        nn.ReLU(),
        nn.Linear(256, WIDE_FLAT),
        nn.ReLU(),
        nn.Unflatten(1, (128, 3, 3)),
        *_deconv(128, 64, padding=0, output_padding=0),  # (B, 64, 7, 7)
        *_conv(64, 64),
        *_deconv(64, 32, padding=1, output_padding=1),  # (B, 32, 14, 14)
        *_conv(32, 32),
        nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28)
        nn.Sigmoid(),
    )


# arch -> (trunk, its output width, decoder); Config.arch names one
ARCHITECTURES = {
    "seed": (seed_encoder_trunk, 64, seed_decoder),
    "wide": (wide_encoder_trunk, 256, wide_decoder),
}


def encoder_trunk(arch: str) -> nn.Sequential:
    return ARCHITECTURES[arch][0]()


def trunk_width(arch: str) -> int:
    return ARCHITECTURES[arch][1]


def build_decoder(arch: str, latent_dim: int) -> nn.Sequential:
    return ARCHITECTURES[arch][2](latent_dim)


def build_encoder(arch: str, latent_dim: int) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, d)."""
    return nn.Sequential(*encoder_trunk(arch), nn.Linear(trunk_width(arch), latent_dim))


class AutoEncoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.encoder = build_encoder(config.arch, config.latent_dim)
        self.decoder = build_decoder(config.arch, config.latent_dim)

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
        self.encoder = encoder if encoder is not None else build_encoder(config.arch, config.latent_dim)
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
    """The seed's VAE: encoder trunk -> Linear(trunk width -> 16) -> mean and log-variance heads."""

    def __init__(self, config: Config):
        super().__init__()
        d = config.latent_dim
        self.trunk = nn.Sequential(*encoder_trunk(config.arch), nn.Linear(trunk_width(config.arch), 16))
        self.mean = nn.Linear(16, d)
        self.logvar = nn.Linear(16, d)
        self.decoder = build_decoder(config.arch, d)
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
