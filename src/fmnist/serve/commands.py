"""Inference commands: generate, classify, reconstruct, encode, evaluate.

They import numpy, onnxruntime and Pillow inside their bodies (never torch or scikit-learn), so
they start fast; ``register(app)`` adds them to the Typer app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fmnist.errors import InputError, report_errors

Artifacts = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        envvar="FMNIST_ARTIFACTS",
        show_envvar=True,
        help="Bundle folder. (default: ./artifacts if it holds a bundle, else the bundled model)",
    ),
]
Provider = Annotated[
    str,
    typer.Option(
        "--provider",
        help="onnxruntime provider: auto (CUDA when this onnxruntime has it, else the CPU without a word), "
        "cpu, or cuda (the CPU with a one-line notice when CUDA is missing). A CUDA provider that fails "
        "to start also falls back to the CPU with a notice.",
    ),
]
Invert = Annotated[
    str,
    typer.Option("--invert", help="Invert to light-on-dark: auto (from the border pixels), yes, no."),
]
Images = Annotated[list[Path], typer.Argument(help="Image files (any format Pillow reads) or folders of them.")]


def _model(artifacts: Path | None, provider: str):
    from fmnist.serve.inference import Model

    return Model(artifacts, provider)


def _load_all(paths: list[Path], invert: str):
    """(loaded paths, images (N, 28, 28), errors). One bad file is reported, the rest go on."""
    import numpy as np

    from fmnist.serve.images import INVERT_CHOICES, expand_inputs, load_image

    if invert not in INVERT_CHOICES:
        raise InputError(f"--invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}")
    good, images, errors = [], [], []
    for path in expand_inputs(paths):
        try:
            images.append(load_image(path, invert))
            good.append(path)
        except InputError as e:
            errors.append(str(e))
    if not good:
        raise InputError(errors[0] if len(errors) == 1 else f"no readable image among {len(errors)} inputs")
    for message in errors:
        print(f"fmnist: error: {message}", file=sys.stderr)
    return good, np.stack(images), errors


def _output_file(out: Path, suffixes: tuple[str, ...]) -> Path:
    """Check an --out file path before any work is done, so a bad one costs nothing."""
    if out.suffix.lower() not in suffixes:
        raise InputError(f"--out {out}: give a {' or a '.join(suffixes)} path")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name")
    return out


def _finish(errors: list[str]) -> None:
    if errors:
        raise typer.Exit(1)


def generate(
    n: Annotated[int, typer.Option("--n", help="How many images, 1 to 10,000.")] = 16,
    sampler: Annotated[
        str,
        typer.Option(
            "--sampler",
            help="kde (default): KDE on the full AE latent, which keeps the correlations between latent "
            "dimensions and so decodes to the most garment-like images; kde-pca: the seed's KDE in 2-D PCA "
            "space, then inverse PCA (blurrier); vae: z ~ N(0, I) through the VAE decoder.",
        ),
    ] = "kde",
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same images.")] = 0,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="A .png (one grid), a .npy (float32 [n,28,28] in [0,1]) or a folder (one PNG each)."
        ),
    ] = Path("samples.png"),
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Generate new garments from the bundle's latent samplers."""
    import numpy as np

    from fmnist.serve.images import IMAGE_SUFFIXES, png_bytes, to_png, to_uint8
    from fmnist.serve.inference import check_generate

    check_generate(n, sampler)
    folder = out.suffix.lower() not in (".png", ".npy")
    if folder and (out.suffix.lower() in IMAGE_SUFFIXES or (out.exists() and not out.is_dir())):
        raise InputError(f"--out {out}: give a .png (one grid), a .npy or a folder")
    if not folder:
        _output_file(out, (".png", ".npy"))
    images = _model(artifacts, provider).generate(n, sampler, seed)
    if out.suffix.lower() == ".png":
        out.write_bytes(to_png(images))
    elif out.suffix.lower() == ".npy":
        np.save(out, images.astype(np.float32))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_uint8(images)):
            (out / f"sample-{i:05d}.png").write_bytes(png_bytes(img))
    typer.echo(f"wrote {n} {sampler} samples to {out}")


def classify(
    images: Images,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to show per image, most likely first (1 to 10).")] = 1,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print one JSON array of {"path", "label", "class", "probability"} (with --top-k > 1 also "top_k").',
        ),
    ] = False,
    invert: Invert = "auto",
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Classify images: the garment class and its probability."""
    from fmnist.serve.inference import top_classes

    if not 1 <= top_k <= 10:
        raise InputError(f"--top-k must be between 1 and 10, not {top_k}")
    model = _model(artifacts, provider)
    paths, batch, errors = _load_all(images, invert)
    rows = []
    for path, ranked in zip(paths, top_classes(model.classify(batch), model.class_names, top_k), strict=True):
        rows.append({"path": str(path), **ranked[0], **({"top_k": ranked} if top_k > 1 else {})})
        if not as_json:
            typer.echo(f"{path}: " + ", ".join(f"{c['class']} {c['probability']:.3f}" for c in ranked))
    if as_json:
        typer.echo(json.dumps(rows))
    _finish(errors)


def reconstruct(
    images: Images,
    out: Annotated[Path, typer.Option("--out", help="PNG: originals (top row) above reconstructions.")] = Path(
        "reconstructions.png"
    ),
    invert: Invert = "auto",
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Reconstruct images through the autoencoder; prints each image's MSE."""
    import numpy as np

    from fmnist.serve.images import to_png

    _output_file(out, (".png",))
    model = _model(artifacts, provider)
    paths, batch, errors = _load_all(images, invert)
    recon = model.reconstruct(batch)
    out.write_bytes(to_png(np.concatenate([batch, recon]), columns=len(batch)))
    for path, mse in zip(paths, ((recon - batch) ** 2).mean((1, 2)), strict=True):
        typer.echo(f"{path}: mse {mse:.5f}")
    typer.echo(f"wrote {out}")
    _finish(errors)


def encode(
    images: Images,
    as_json: Annotated[bool, typer.Option("--json", help='Print a JSON array of {"path", "latent"}.')] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the latents as a float32 .npy [N, d].")] = None,
    invert: Invert = "auto",
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Encode images to their latent vectors."""
    import numpy as np

    if out is not None:
        _output_file(out, (".npy",))
    model = _model(artifacts, provider)
    paths, batch, errors = _load_all(images, invert)
    latents = model.encode(batch)
    if out is not None:
        np.save(out, latents.astype(np.float32))
        typer.echo(f"wrote {latents.shape[0]}x{latents.shape[1]} latents to {out}")
    elif as_json:
        typer.echo(json.dumps([{"path": str(p), "latent": z.tolist()} for p, z in zip(paths, latents, strict=True)]))
    else:
        for p, z in zip(paths, latents, strict=True):
            typer.echo(f"{p}: " + " ".join(f"{v:.4f}" for v in z))
    _finish(errors)


def evaluate(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="FMNIST_DATA", show_envvar=True, help="Folder holding FashionMNIST/raw."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the VAE noise and the samplers.")] = 0,
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Evaluate the bundle alone on the official test set: AE MSE, accuracy, VAE ELBO, sample quality."""
    from fmnist.config import default_data_dir
    from fmnist.serve.evaluation import evaluate as run_evaluation
    from fmnist.serve.evaluation import load_test_set

    model = _model(artifacts, provider)
    images, labels = load_test_set(data_dir or default_data_dir())
    result = run_evaluation(model, images, labels, seed)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"bundle {model.folder} on {result['test_images']} test images")
    typer.echo(f"  reconstruction MSE   {result['reconstruction_mse']:.5f}")
    typer.echo(f"  classifier accuracy  {result['classifier_accuracy']:.4f}")
    per_class = result["per_class_accuracy"]
    per_class = ", ".join(f"{name} {a:.3f}" for name, a in per_class.items() if a is not None)
    typer.echo(f"  per class            {per_class}")
    typer.echo(f"  VAE ELBO             {result['vae_elbo']:.1f} nats/image")
    for name, s in result["samplers"].items():
        spread = ", ".join(f"{c} {f:.0%}" for c, f in s["class_spread"].items())
        typer.echo(
            f"  {name:8s} Frechet {s['frechet_distance']:.3f}, mean top-class p "
            f"{s['mean_top_probability']:.3f}; classes: {spread}"
        )


def register(app: typer.Typer) -> None:
    for command in (generate, classify, reconstruct, encode, evaluate):
        app.command()(report_errors(command))
