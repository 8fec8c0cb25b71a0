"""Plain ``nn.Module``s: the seed autoencoder, the classifier on its encoder, and the VAE.

Usable without a Trainer; every module is rebuilt from a saved :class:`fmnist.config.Config`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def _to_features(dropout: float) -> list[nn.Module]:
    """(B, 128, 3, 3) -> (B, 256), the wide and medium trunks' last layers."""
    return [nn.Flatten(), nn.Dropout(dropout), nn.Linear(WIDE_FLAT, 256), nn.ReLU()]


def _from_latent(latent_dim: int) -> list[nn.Module]:
    """(B, d) -> (B, 128, 3, 3), the wide and medium decoders' first layers."""
    return [
        nn.Linear(latent_dim, 256),
        nn.ReLU(),
        nn.Linear(256, WIDE_FLAT),
        nn.ReLU(),
        nn.Unflatten(1, (128, 3, 3)),
    ]


def wide_encoder_trunk(dropout: float = 0.25) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 256): four times the seed's channels, two convolutions per scale and
    batch norm; the dropout regularises the end-to-end (``--unfreeze``) classifier."""
    return nn.Sequential(
        *_conv(1, 32),
        *_conv(32, 32, stride=2),  # (B, 32, 14, 14)
        *_conv(32, 64),
        *_conv(64, 64, stride=2),  # (B, 64, 7, 7)
        *_conv(64, 128, stride=2, padding=0),  # (B, 128, 3, 3)
        *_to_features(dropout),
    )


def wide_decoder(latent_dim: int) -> nn.Sequential:
    """(B, d) -> (B, 1, 28, 28) in [0, 1]: the wide encoder mirrored."""
    return nn.Sequential(
        *_from_latent(latent_dim),
        *_deconv(128, 64, padding=0, output_padding=0),  # (B, 64, 7, 7)
        *_conv(64, 64),
        *_deconv(64, 32, padding=1, output_padding=1),  # (B, 32, 14, 14)
        *_conv(32, 32),
        nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28)
        nn.Sigmoid(),
    )


def medium_encoder_trunk(dropout: float = 0.0) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 256): wide's channels and batch norm with one convolution per scale
    beyond the first, and the first one strided (half of wide's cost per step on the CPU)."""
    return nn.Sequential(
        *_conv(1, 32, stride=2),  # (B, 32, 14, 14)
        *_conv(32, 64),
        *_conv(64, 64, stride=2),  # (B, 64, 7, 7)
        *_conv(64, 128, stride=2, padding=0),  # (B, 128, 3, 3)
        *_to_features(dropout),
    )


def medium_decoder(latent_dim: int) -> nn.Sequential:
    """(B, d) -> (B, 1, 28, 28) in [0, 1]: the medium encoder mirrored."""
    return nn.Sequential(
        *_from_latent(latent_dim),
        *_deconv(128, 64, padding=0, output_padding=0),  # (B, 64, 7, 7)
        *_conv(64, 64),
        *_deconv(64, 32, padding=1, output_padding=1),  # (B, 32, 14, 14)
        nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),  # (B, 1, 28, 28)
        nn.Sigmoid(),
    )


@dataclass(frozen=True)
class Architecture:
    trunk: Callable[..., nn.Sequential]  # (dropout) -> (B, 1, 28, 28) -> (B, width)
    width: int
    decoder: Callable[[int], nn.Sequential]
    vae_hidden: int | None  # the VAE's layer between trunk and mean/log-variance heads (None: none)
    default_dropout: float  # the trunk's dropout in the AE and VAE


# Config.arch names one; seed and wide keep the layout their published figures came from
ARCHITECTURES = {
    "seed": Architecture(seed_encoder_trunk, 64, seed_decoder, vae_hidden=16, default_dropout=0.0),
    "wide": Architecture(wide_encoder_trunk, 256, wide_decoder, vae_hidden=16, default_dropout=0.25),
    "medium": Architecture(medium_encoder_trunk, 256, medium_decoder, vae_hidden=None, default_dropout=0.0),
}


def encoder_trunk(arch: str, dropout: float | None = None) -> nn.Sequential:
    """The arch's trunk; ``dropout`` None keeps its AE value (the seed trunk has no dropout layer)."""
    a = ARCHITECTURES[arch]
    if arch == "seed":
        return a.trunk()
    return a.trunk(a.default_dropout if dropout is None else dropout)


def trunk_width(arch: str) -> int:
    return ARCHITECTURES[arch].width


def build_decoder(arch: str, latent_dim: int) -> nn.Sequential:
    return ARCHITECTURES[arch].decoder(latent_dim)


def build_encoder(arch: str, latent_dim: int, dropout: float | None = None) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, d)."""
    return nn.Sequential(*encoder_trunk(arch, dropout), nn.Linear(trunk_width(arch), latent_dim))


class AutoEncoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.encoder = build_encoder(config.arch, config.latent_dim)
        self.decoder = build_decoder(config.arch, config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Head(nn.Module):
    """Linear(d -> h) ReLU [Linear(h -> h) ReLU] * (depth - 1) Linear(h -> 10); ``hidden`` gives
    the last hidden activation (the bundle's classifier features)."""

    def __init__(self, latent_dim: int, width: int, depth: int = 1, n_classes: int = 10):
        super().__init__()
        layers = [nn.Linear(latent_dim, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class Classifier(nn.Module):
    """The AE's encoder (frozen unless ``config.unfreeze``) followed by a small head."""

    def __init__(self, config: Config, encoder: nn.Module | None = None):
        super().__init__()
        self.frozen = not config.unfreeze
        dropout = config.dropout if config.unfreeze else None
        self.encoder = encoder if encoder is not None else build_encoder(config.arch, config.latent_dim, dropout)
        self.head = Head(config.latent_dim, *config.head_shape)
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
    """Encoder trunk [-> Linear(trunk width -> 16), the seed's] -> mean and log-variance heads."""

    def __init__(self, config: Config):
        super().__init__()
        d, hidden = config.latent_dim, ARCHITECTURES[config.arch].vae_hidden
        width = trunk_width(config.arch)
        self.trunk = nn.Sequential(*encoder_trunk(config.arch), *([nn.Linear(width, hidden)] if hidden else []))
        self.mean = nn.Linear(hidden or width, d)
        self.logvar = nn.Linear(hidden or width, d)
        self.decoder = build_decoder(config.arch, d)
        # log of the likelihood's scale: one scalar shared by all pixels, or one per pixel
        self.likelihood = config.vae_likelihood
        self.log_scale = nn.Parameter(torch.zeros(() if self.likelihood == "gaussian" else (1, 28, 28)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.mean(h), self.logvar(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction mean, z, mu, logvar); z by reparameterisation."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), z, mu, logvar


def start_vae_from_ae(vae: VAE, ae: AutoEncoder) -> None:
    """Copy a trained AE of the same arch and latent size into ``vae``: its trunk, its decoder, and
    (when the VAE has no hidden layer between trunk and heads) its last encoder layer as the mean
    head, so the VAE starts from sharp reconstructions instead of from noise."""
    encoder, n = ae.encoder, len(ae.encoder) - 1  # the trunk, then Linear(width -> d)
    vae.trunk[:n].load_state_dict(encoder[:n].state_dict())
    if len(vae.trunk) == n:
        vae.mean.load_state_dict(encoder[n].state_dict())
    vae.decoder.load_state_dict(ae.decoder.state_dict())
