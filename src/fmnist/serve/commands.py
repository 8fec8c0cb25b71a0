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
Provider = Annotated[str, typer.Option("--provider", help="onnxruntime provider: auto (CUDA if available), cpu, cuda.")]
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


def _finish(errors: list[str]) -> None:
    if errors:
        raise typer.Exit(1)


def generate(
    n: Annotated[int, typer.Option("--n", help="How many images (1 to 10,000).")] = 16,
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

    from fmnist.serve.images import png_bytes, to_png, to_uint8
    from fmnist.serve.inference import check_generate

    check_generate(n, sampler)
    images = _model(artifacts, provider).generate(n, sampler, seed)
    if out.suffix.lower() == ".png":
        out.write_bytes(to_png(images))
    elif out.suffix.lower() == ".npy":
        np.save(out, images.astype(np.float32))
    else:
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file; give a .png, a .npy or a folder")
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_uint8(images)):
            (out / f"sample-{i:05d}.png").write_bytes(png_bytes(img))
    typer.echo(f"wrote {n} {sampler} samples to {out}")


def classify(
    images: Images,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=10, help="Classes to show per image.")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print one JSON array of {"path", "label", "class", "probability"}.')
    ] = False,
    invert: Invert = "auto",
    artifacts: Artifacts = None,
    provider: Provider = "auto",
) -> None:
    """Classify images: the garment class and its probability."""
    model = _model(artifacts, provider)
    paths, batch, errors = _load_all(images, invert)
    probabilities = model.classify(batch)
    rows = []
    for path, p in zip(paths, probabilities, strict=True):
        order = p.argsort()[::-1][:top_k]
        row = {
            "path": str(path),
            "label": int(order[0]),
            "class": model.class_names[order[0]],
            "probability": float(p[order[0]]),
        }
        if top_k > 1:
            row["top_k"] = [{"label": int(k), "class": model.class_names[k], "probability": float(p[k])} for k in order]
        rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for row, p in zip(rows, probabilities, strict=True):
            ranked = p.argsort()[::-1][:top_k]
            typer.echo(f"{row['path']}: " + ", ".join(f"{model.class_names[k]} {p[k]:.3f}" for k in ranked))
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

    if out is not None and out.suffix.lower() != ".npy":
        raise InputError(f"--out {out}: give a .npy path")
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
    typer.echo(f"  VAE ELBO             {result['vae_elbo']:.1f} nats/image")
    for name, s in result["samplers"].items():
        typer.echo(f"  {name:8s} Frechet {s['frechet_distance']:.2f}, mean top-class p {s['mean_top_probability']:.3f}")


def register(app: typer.Typer) -> None:
    for command in (generate, classify, reconstruct, encode, evaluate):
        app.command()(report_errors(command))
