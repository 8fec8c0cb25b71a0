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

from fmnist.contract.models import MODEL_SPECS
from fmnist.contract.models import MODELS as MODEL_NAMES
from fmnist.errors import ConfigError
from fmnist.runtime.limits import SEED_RANGE, seed_message

DATA_ENV_VAR = "FMNIST_DATA"
MODELS = MODEL_NAMES  # every model, in training order (declared in fmnist.contract.models)
DEFAULT_EPOCHS = {spec.name: spec.default_epochs for spec in MODEL_SPECS}
# (hidden width, hidden layers) of each classifier's head when not set; a model without a head of
# its own takes the fine-tuned classifier's. Configs saved before head_depth existed had one layer.
HEAD_SHAPES = {spec.name: spec.head_shape for spec in MODEL_SPECS if spec.head_shape is not None}


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


SEED_MAX = SEED_RANGE[1]
# The help panel of the hyper-parameter flags of `fmnist train` and `fmnist tune`.
PANEL = "Hyper-parameters"


def flag(name: str) -> str:
    """The flag of field ``name``: ``latent_dim`` -> ``--latent-dim``."""
    return "--" + name.replace("_", "-")


def hyper(default: Any, help: str, *, flag: str | None = None, shown: str | None = None, choices=None) -> Any:
    """A Config field with what its flag needs: the help text; ``flag``, a spelling other than the
    field's (``--unfreeze/--freeze``); ``shown``, the default as --help says it when the value
    alone does not (None: each model's own); ``choices``, the allowed values."""
    metadata = {"help": help, "flag": flag, "shown": shown, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    """Every field is a flag of ``fmnist train`` and ``fmnist tune`` (fmnist.cli.flags), made from
    its metadata; a new field is a new flag."""

    # data
    seed: int = hyper(0, f"Seed for split, init and batches (0 to {SEED_MAX}).")
    limit_train: int | None = hyper(None, "Use the first N training images after the seeded shuffle.", shown="all")
    val_fraction: float = hyper(0.1, "Share of the official training set held out (seeded) for validation.")
    # optimisation, shared by every model
    epochs: int | None = hyper(
        None,
        "Epochs for every model trained.",
        shown=", ".join(f"{m} {n}" for m, n in DEFAULT_EPOCHS.items()),
    )
    batch_size: int = hyper(128, "Batch size.")
    lr: float = hyper(3e-3, "Adam learning rate.")
    lr_schedule: str = hyper("cosine", "cosine (decay to 0 over --epochs) or constant.", choices=LR_SCHEDULES)
    # autoencoder (the VAE uses the same latent size)
    arch: str = hyper("medium", f"AE architecture: {' or '.join(ARCHS)}.", choices=ARCHS)
    latent_dim: int = hyper(8, "Latent size d.")
    l1: float = hyper(0.0, "L1 penalty l1*sum|w| on the AE weights.")
    l2: float = hyper(0.0, "L2 as Adam weight decay.")
    # classifier head on the AE's encoder
    head_width: int | None = hyper(
        None,
        "Hidden width of a classifier's head.",
        shown=", ".join(f"{m} {w}" for m, (w, _) in HEAD_SHAPES.items()),
    )
    head_depth: int | None = hyper(
        None,
        "Hidden layers of a classifier's head (1 to 8).",
        shown=", ".join(f"{m} {d}" for m, (_, d) in HEAD_SHAPES.items()),
    )
    # the head model sees only the frozen 8-number latent and overfits it: its training latents get
    # Gaussian noise of this times each latent's spread in the batch
    head_noise: float = hyper(0.1, "Noise on the head model's training latents, times each latent's spread.")
    unfreeze: bool = hyper(
        True,
        "The classifier fine-tunes its encoder end to end (at lr x encoder_lr_scale); the head model "
        "always keeps it frozen.",
        flag="--unfreeze/--freeze",
    )
    encoder_lr_scale: float = hyper(
        1.0, "The fine-tuned encoder's lr is lr times this (< 1: a slower encoder keeps more of the AE)."
    )
    dropout: float = hyper(0.1, "Dropout before the fine-tuned classifier's first linear layer.")
    # classifier training augmentation (fmnist.training.augment), drawn per image: what photos
    # users bring differ by in framing, pose, contrast and focus
    augment: bool = hyper(
        True,
        "Train the classifier on images mirrored and (all but a plain half) shifted, zoomed, turned, "
        "re-contrasted, brightened and blurred.",
    )
    # share of each batch left without the photo transforms below: the test set and framed photos
    # look like plain images, and a classifier trained only on transformed ones underfits them
    aug_plain: float = hyper(0.5, "Share of each batch left without the photo transforms (not the mirror).")
    aug_flip: float = hyper(0.5, "Probability of a left-right mirror (shoes face both ways in photos).")
    aug_shift: float = hyper(0.1, "Largest translation, as a fraction of the side.")
    aug_scale: tuple[float, float] = hyper((0.8, 1.1), "Zoom range LOW HIGH (< 1: the garment gets smaller).")
    aug_rotate: float = hyper(10.0, "Largest rotation, degrees.")
    aug_contrast: float = hyper(0.3, "Contrast factor drawn from [1 - this, 1 + this].")
    aug_brightness: float = hyper(0.1, "Offset drawn from [-this, this], added, then clipped to [0, 1].")
    aug_blur: float = hyper(0.2, "Probability of a Gaussian blur (sigma 0.4 to 1.2 pixels).")
    # VAE
    vae_scale: str = hyper(
        "optimal",
        "The VAE likelihood's shared scale: optimal (sigma-VAE closed form) or learned (by gradient, the seed's).",
        choices=VAE_SCALES,
    )
    vae_likelihood: str = hyper(
        "gaussian",
        "The VAE decoder's likelihood: gaussian (one shared scale, the seed's), gaussian-pixel (a scale per "
        "pixel, on dequantized pixels) or logistic (discretized, per pixel).",
        choices=VAE_LIKELIHOODS,
    )
    vae_from_ae: bool = hyper(True, "Start the VAE's trunk and decoder from the run's AE when it has one.")
    iw_samples: int = hyper(16, "Importance samples for the VAE's log p(x) (k decoder passes per test image).")

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.seed, int) and 0 <= self.seed <= SEED_MAX, seed_message(self.seed)),
            (self.limit_train is None or self.limit_train >= 1, "--limit-train must be >= 1"),
            (0.0 < self.val_fraction < 1.0, "--val-fraction must be in (0, 1)"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.latent_dim >= 1, "--latent-dim must be >= 1"),
            (self.l1 >= 0, "--l1 must be >= 0"),
            (self.l2 >= 0, "--l2 must be >= 0"),
            (self.head_width is None or self.head_width >= 1, "--head-width must be >= 1"),
            (self.head_depth is None or 1 <= self.head_depth <= 8, "--head-depth must be between 1 and 8"),
            (self.head_noise >= 0, "--head-noise must be >= 0"),
            (self.encoder_lr_scale > 0, "--encoder-lr-scale must be > 0"),
            (0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)"),
            (0.0 <= self.aug_plain <= 1.0, "--aug-plain must be in [0, 1]"),
            (0.0 <= self.aug_flip <= 1.0, "--aug-flip must be in [0, 1]"),
            (0.0 <= self.aug_shift < 0.5, "--aug-shift must be in [0, 0.5)"),
            (0 < self.aug_scale[0] <= self.aug_scale[1], "--aug-scale must be LOW HIGH with 0 < LOW <= HIGH"),
            (0.0 <= self.aug_rotate <= 180.0, "--aug-rotate must be in [0, 180]"),
            (0.0 <= self.aug_contrast < 1.0, "--aug-contrast must be in [0, 1)"),
            (0.0 <= self.aug_brightness < 1.0, "--aug-brightness must be in [0, 1)"),
            (0.0 <= self.aug_blur <= 1.0, "--aug-blur must be in [0, 1]"),
            (self.vae_likelihood in VAE_LIKELIHOODS, f"--vae-likelihood must be one of {', '.join(VAE_LIKELIHOODS)}"),
            (self.iw_samples >= 1, "--iw-samples must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"{flag(f.name)} must be one of {', '.join(choices)}, not {value!r}")

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
