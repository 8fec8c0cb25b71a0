"""The models ``fmnist train`` knows, declared once: their names, what each trains from, its
default epochs and head shape, and which bundle graphs it is exported as.

Standard library only, so the command line checks ``--model`` and shows the defaults without
loading torch. The config's tables, the run folder, the training stage (each LightningModule
registers under one of these names), the report and the CLI's choices all read this tuple.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str  # what it is, for --help and messages
    default_epochs: int
    # the model whose best.ckpt it starts from (its encoder, or trunk and decoder), or None
    trains_from: str | None = None
    # True: it cannot train without that checkpoint; False: it starts from it only when there is one
    needs_start: bool = False
    # (hidden width, hidden layers) of a classifier's head when the config leaves them unset
    head_shape: tuple[int, int] | None = None
    # the bundle graphs (fmnist.artifacts.GRAPHS names) it is exported as; () for one never exported
    graphs: tuple[str, ...] = ()


# In training order: each model's trains_from comes before it. The frozen encoder's head sees only
# the 8-number latent, where a second hidden layer separates the classes better; the fine-tuned
# classifier keeps the seed's one layer.
MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("ae", "the convolutional autoencoder", 20, graphs=("encoder", "decoder")),
    ModelSpec(
        "head",
        "the seed's experiment: a head on the AE's frozen encoder",
        30,
        trains_from="ae",
        needs_start=True,
        head_shape=(256, 2),
    ),
    ModelSpec(
        "classifier",
        "the AE's encoder and a head fine-tuned end to end on augmented images (the bundle's)",
        40,
        trains_from="ae",
        needs_start=True,
        head_shape=(126, 1),
        graphs=("classifier",),
    ),
    ModelSpec(
        "vae",
        "the variational autoencoder, started from the AE's trunk and decoder",
        3,
        trains_from="ae",
        graphs=("vae_encoder", "vae_decoder"),
    ),
)
BY_NAME = {spec.name: spec for spec in MODEL_SPECS}
MODELS = tuple(BY_NAME)  # every model, in training order
EXPORTED = tuple(spec.name for spec in MODEL_SPECS if spec.graphs)  # what a bundle holds graphs of
ALL = "all"  # --model all: every model, in order


def spec(name: str) -> ModelSpec:
    return BY_NAME[name]
