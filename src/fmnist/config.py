"""The one typed configuration: every hyper-parameter with its default.

CLI flags, Optuna trials and ``--params`` files make new configs with :func:`Config.updated`;
the resolved config is saved in every checkpoint and bundle and models are rebuilt from it,
never from today's defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.errors import ConfigError

DATA_ENV_VAR = "FMNIST_DATA"
# ae: the autoencoder; head: the seed's experiment, a small head on the frozen AE encoder;
# classifier: the AE encoder and a head fine-tuned end to end on augmented images (the bundle's);
# vae: the variational autoencoder, started from the AE's trunk and decoder
MODELS = ("ae", "head", "classifier", "vae")
DEFAULT_EPOCHS = {"ae": 20, "head": 30, "classifier": 40, "vae": 3}
# (hidden width, hidden layers) of each classifier's head when not set. The frozen encoder's head
# sees only the 8-number latent, where a second hidden layer separates the classes better; the
# fine-tuned classifier keeps the seed's one layer. Configs saved before head_depth existed had one.
HEAD_SHAPES = {"head": (256, 2), "classifier": (126, 1)}


def default_data_dir(recorded: Path | None = None) -> Path:
    """``$FMNIST_DATA``, else ``recorded`` (the folder a run was trained on), else a per-user cache
    folder (torchvision layout below it). A relative ``$FMNIST_DATA`` is made absolute here, from
    the folder the command started in, so a run records where its data really is."""
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.path.abspath(Path(os.environ[DATA_ENV_VAR]).expanduser()))
    if recorded is not None:
        return Path(recorded)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fmnist"


# seed: the seed's small network (50k parameters); wide: four times the channels with batch
# norm (874k); medium: the default, wide's channels and batch norm with one convolution fewer
# per scale, so that the whole default recipe trains within an hour on two CPU cores
ARCHS = ("seed", "wide", "medium")
LR_SCHEDULES = ("cosine", "constant")
# learned: the seed's scale, one scalar trained by gradient; optimal: the sigma-VAE's closed form
# (Rybkin et al. 2021), the scale that maximises the likelihood of each batch's reconstructions
VAE_SCALES = ("learned", "optimal")
# gaussian: the seed's, one scale shared by all pixels; gaussian-pixel: one scale per pixel, on
# dequantized pixels; logistic: a discretized logistic per pixel (its 8-bit levels' probabilities)
VAE_LIKELIHOODS = ("gaussian", "gaussian-pixel", "logistic")
ENCODER_SHAPE = ("latent_dim", "arch")  # the fields a classifier shares with the AE it is built on
# Fields added after runs had been saved without them, with the values that reproduce those runs
# (a saved config missing one predates it, so today's default would change what it trains).
LEGACY_VALUES = {"head_noise": 0.0, "aug_plain": 0.0, "aug_flip": 0.0}


@dataclass(frozen=True)
class Config:
    # data
    seed: int = 0
    limit_train: int | None = None  # first N training images after the seeded shuffle
    val_fraction: float = 0.1  # seeded hold-out of the official training set
    # optimisation, shared by every model
    epochs: int | None = None  # None: each model's own default, DEFAULT_EPOCHS
    batch_size: int = 128
    lr: float = 3e-3
    lr_schedule: str = "cosine"  # cosine decays lr to 0 over the epochs; or constant
    # autoencoder (the VAE uses the same latent size)
    arch: str = "medium"
    latent_dim: int = 8
    l1: float = 0.0  # l1 * sum|w| added to the loss
    l2: float = 0.0  # Adam weight decay
    # classifier head on the AE's encoder
    head_width: int | None = None  # None: the model's own, HEAD_SHAPES
    head_depth: int | None = None
    # the head model sees only the frozen 8-number latent and overfits it: its training latents get
    # Gaussian noise of this times each latent's spread in the batch
    head_noise: float = 0.1
    unfreeze: bool = True  # the classifier fine-tunes its encoder; the head model never does
    encoder_lr_scale: float = 1.0  # encoder lr = lr * this when fine-tuned (< 1: a slower encoder keeps more of the AE)
    dropout: float = 0.1  # before the encoder's first linear layer, in the fine-tuned classifier only
    # classifier training augmentation (fmnist.training.augment), drawn per image: what photos
    # users bring differ by in framing, pose, contrast and focus
    augment: bool = True
    # share of each batch left without the photo transforms below: the test set and framed photos
    # look like plain images, and a classifier trained only on transformed ones underfits them
    aug_plain: float = 0.5
    aug_flip: float = 0.5  # probability of a left-right mirror (any image): shoes face both ways in photos
    aug_shift: float = 0.1  # largest translation, as a fraction of the side
    aug_scale: tuple[float, float] = (0.8, 1.1)  # zoom range (< 1: the garment gets smaller)
    aug_rotate: float = 10.0  # largest rotation, degrees
    aug_contrast: float = 0.3  # contrast factor drawn from [1 - this, 1 + this]
    aug_brightness: float = 0.1  # added offset drawn from [-this, this], then clipped to [0, 1]
    aug_blur: float = 0.2  # probability of a Gaussian blur (sigma 0.4 to 1.2 pixels)
    # VAE
    vae_scale: str = "optimal"
    vae_likelihood: str = "gaussian"  # the decoder's likelihood, one of VAE_LIKELIHOODS
    vae_from_ae: bool = True  # start the VAE's trunk and decoder from the run's AE when it has one
    iw_samples: int = 16  # importance samples for the log p(x) estimate (k decoder passes per test image)

    def __post_init__(self) -> None:
        checks = [
            (self.seed >= 0, "--seed must be >= 0"),
            (self.limit_train is None or self.limit_train >= 1, "--limit-train must be >= 1"),
            (0.0 < self.val_fraction < 1.0, "val_fraction must be in (0, 1)"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}"),
            (self.arch in ARCHS, f"--arch must be one of {', '.join(ARCHS)}"),
            (self.latent_dim >= 1, "--latent-dim must be >= 1"),
            (self.l1 >= 0, "--l1 must be >= 0"),
            (self.l2 >= 0, "--l2 must be >= 0"),
            (self.head_width is None or self.head_width >= 1, "--head-width must be >= 1"),
            (self.head_depth is None or 1 <= self.head_depth <= 8, "--head-depth must be between 1 and 8"),
            (self.head_noise >= 0, "head_noise must be >= 0"),
            (self.encoder_lr_scale > 0, "encoder_lr_scale must be > 0"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (0.0 <= self.aug_plain <= 1.0, "aug_plain must be in [0, 1]"),
            (0.0 <= self.aug_flip <= 1.0, "aug_flip must be in [0, 1]"),
            (0.0 <= self.aug_shift < 0.5, "aug_shift must be in [0, 0.5)"),
            (0 < self.aug_scale[0] <= self.aug_scale[1], "aug_scale must be (low, high) with 0 < low <= high"),
            (0.0 <= self.aug_rotate <= 180.0, "aug_rotate must be in [0, 180]"),
            (0.0 <= self.aug_contrast < 1.0, "aug_contrast must be in [0, 1)"),
            (0.0 <= self.aug_brightness < 1.0, "aug_brightness must be in [0, 1)"),
            (0.0 <= self.aug_blur <= 1.0, "aug_blur must be in [0, 1]"),
            (self.vae_scale in VAE_SCALES, f"vae_scale must be one of {', '.join(VAE_SCALES)}"),
            (
                self.vae_likelihood in VAE_LIKELIHOODS,
                f"--vae-likelihood must be one of {', '.join(VAE_LIKELIHOODS)}",
            ),
            (self.iw_samples >= 1, "--iw-samples must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def updated(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied; ``None`` values mean "keep", unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown hyper-parameter(s): {', '.join(unknown)}")
        changes = {k: tuple(v) if k == "aug_scale" else v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)

    def for_model(self, model: str) -> Config:
        """This config with ``epochs`` (and a classifier's head shape) resolved for ``model``."""
        width, depth = HEAD_SHAPES.get(model, HEAD_SHAPES["classifier"])
        return dataclasses.replace(
            self,
            epochs=DEFAULT_EPOCHS[model] if self.epochs is None else self.epochs,
            head_width=width if self.head_width is None else self.head_width,
            head_depth=depth if self.head_depth is None else self.head_depth,
        )

    @property
    def head_shape(self) -> tuple[int, int]:
        """(width, hidden layers) of a classifier's head; unresolved fields take the classifier's."""
        width, depth = HEAD_SHAPES["classifier"]
        return self.head_width or width, self.head_depth or depth

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        return cls().updated(**values)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> Config:
        """A config a run or checkpoint saved: fields it predates take LEGACY_VALUES, not defaults."""
        return cls.from_dict({**LEGACY_VALUES, **values})

    @classmethod
    def from_json(cls, path: Path, saved: bool = False) -> Config:
        """A ``--params`` file, or with ``saved`` a run's own config.json (see :meth:`from_saved`)."""
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of hyper-parameters")
        return cls.from_saved(values) if saved else cls.from_dict(values)


DEFAULTS = Config()
