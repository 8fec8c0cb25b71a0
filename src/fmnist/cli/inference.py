"""Inference commands: generate, classify, reconstruct, encode, evaluate.

They are parsed with argparse and import numpy, onnxruntime and Pillow inside their bodies (never
torch, scikit-learn or typer), so ``fmnist classify one.png`` starts in about a quarter of a
second: ``fmnist.__main__`` sends these commands straight to :func:`run`, and ``register(app)``
lists them in the Typer app, which forwards its arguments here unchanged.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

from fmnist.cli.outputs import check_file, check_folder
from fmnist.errors import FmnistError, InputError, print_error, report_error

COMMANDS = ("generate", "classify", "reconstruct", "encode", "evaluate")
DEFAULT_SCALE, MAX_SCALE = 4, 16  # 4: a 28-pixel image shows at 112 px, a size a person can look at
SAMPLER_HELP = (
    "kde (default): KDE on the full AE latent, which keeps the correlations between latent dimensions "
    "and so decodes to the most garment-like images; kde-pca: the seed's KDE in 2-D PCA space, then "
    "inverse PCA (blurrier); vae: z ~ N(0, I) through the VAE decoder."
)


def _bundle(artifacts: Path | None, provider: str):
    from fmnist.runtime.bundle import Bundle

    return Bundle(artifacts, provider)


def _load_all(paths: list[Path], invert: str, max_pixels: int):
    """(loaded paths, images (N, 28, 28), errors). One bad file is reported, the rest go on."""
    import numpy as np

    from fmnist.runtime.images import expand_inputs, load_image

    if max_pixels < 28 * 28:
        raise InputError(f"--max-pixels must be >= {28 * 28}, not {max_pixels}")
    good, images, errors = [], [], []
    for path in expand_inputs(paths):
        try:
            images.append(load_image(path, invert, max_pixels))
            good.append(path)
        except InputError as e:
            errors.append(str(e))
    if not good:
        raise InputError(errors[0] if len(errors) == 1 else f"no readable image among {len(errors)} inputs")
    for message in errors:
        print_error(message)
    return good, np.stack(images), errors


def _finish(errors: list[str]) -> int:
    """Exit code 1 when some (not all) inputs could not be read."""
    return 1 if errors else 0


def generate(n: int, sampler: str, seed: int, out: Path, scale: int, artifacts: Path | None, provider: str) -> int:
    """Generate new garments from the bundle's latent samplers."""
    import numpy as np

    from fmnist.runtime.images import png_bytes, to_png, to_uint8, upscale
    from fmnist.runtime.sampling import check_generate

    check_generate(n, sampler)
    folder = out.suffix.lower() not in (".png", ".npy")
    if folder and (out.suffix or out.exists()) and not out.is_dir():
        raise InputError(f"--out {out}: give a .png (one grid), a .npy or a folder (a name without a suffix)")
    if folder:
        check_folder(out)
    else:
        check_file(out, (".png", ".npy"))
    images = _bundle(artifacts, provider).generate(n, sampler, seed)
    if out.suffix.lower() == ".png":
        out.write_bytes(to_png(images, scale=scale))
    elif out.suffix.lower() == ".npy":
        np.save(out, images.astype(np.float32))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_uint8(images)):
            (out / f"sample-{i:05d}.png").write_bytes(png_bytes(upscale(img, scale)))
    print(f"wrote {n} {sampler} sample{'' if n == 1 else 's'} to {out}")
    return 0


def classify(
    images: list[Path], top_k: int, as_json: bool, invert: str, max_pixels: int, artifacts: Path | None, provider: str
) -> int:
    """Classify images: the garment class and its probability."""
    from fmnist.runtime.bundle import top_classes
    from fmnist.runtime.images import is_blank
    from fmnist.runtime.sessions import notice

    if not 1 <= top_k <= 10:
        raise InputError(f"--top-k must be between 1 and 10, not {top_k}")
    model = _bundle(artifacts, provider)
    paths, batch, errors = _load_all(images, invert, max_pixels)
    for path, x in zip(paths, batch, strict=True):
        if is_blank(x):
            notice(f"{path}: no garment found (the image is blank), its class is a guess")
    rows = []
    for path, ranked in zip(paths, top_classes(model.classify(batch), model.class_names, top_k), strict=True):
        rows.append({"path": str(path), **ranked[0], **({"top_k": ranked} if top_k > 1 else {})})
        if not as_json:
            print(f"{path}: " + ", ".join(f"{c['class']} {c['probability']:.3f}" for c in ranked))
    if as_json:
        print(json.dumps(rows))
    return _finish(errors)


def reconstruct(
    images: list[Path], out: Path, scale: int, invert: str, max_pixels: int, artifacts: Path | None, provider: str
) -> int:
    """Reconstruct images through the autoencoder; prints each image's MSE."""
    import numpy as np

    from fmnist.runtime.images import to_png

    check_file(out, (".png",))
    model = _bundle(artifacts, provider)
    paths, batch, errors = _load_all(images, invert, max_pixels)
    recon = model.reconstruct(batch)
    out.write_bytes(to_png(np.concatenate([batch, recon]), columns=len(batch), scale=scale))
    for path, mse in zip(paths, ((recon - batch) ** 2).mean((1, 2)), strict=True):
        print(f"{path}: mse {mse:.5f}")
    print(f"wrote {out}")
    return _finish(errors)


def encode(
    images: list[Path],
    as_json: bool,
    out: Path | None,
    invert: str,
    max_pixels: int,
    artifacts: Path | None,
    provider: str,
) -> int:
    """Encode images to their latent vectors."""
    import numpy as np

    if out is not None:
        check_file(out, (".npy",))
    model = _bundle(artifacts, provider)
    paths, batch, errors = _load_all(images, invert, max_pixels)
    latents = model.encode(batch)
    if out is not None:
        np.save(out, latents.astype(np.float32))
        print(f"wrote {latents.shape[0]}x{latents.shape[1]} latents to {out}")
    elif as_json:
        print(json.dumps([{"path": str(p), "latent": z.tolist()} for p, z in zip(paths, latents, strict=True)]))
    else:
        for p, z in zip(paths, latents, strict=True):
            print(f"{p}: " + " ".join(f"{v:.4f}" for v in z))
    return _finish(errors)


def evaluate(data_dir: Path | None, as_json: bool, seed: int, artifacts: Path | None, provider: str) -> int:
    """Evaluate the bundle alone on the official test set: AE MSE, accuracy (also on product photos),
    VAE ELBO, and sample quality in the fixed reference network's features."""
    from fmnist import degenerate
    from fmnist.config import default_data_dir
    from fmnist.runtime.evaluation import bits_per_dim_line, evaluate_bundle, load_split, recorded_data_dir
    from fmnist.runtime.progress import Progress
    from fmnist.runtime.sessions import notice

    model = _bundle(artifacts, provider)
    root = data_dir or default_data_dir(recorded_data_dir(model.manifest))
    images, labels = load_split(root, "t10k")
    train_images, _ = load_split(root, "train")
    result = evaluate_bundle(model, images, labels, train_images, seed, progress=Progress.on_terminal(quiet=as_json))
    for line in degenerate.notices(
        accuracy=result["classifier_accuracy"],
        reconstruction_mse=result["reconstruction_mse"],
        baseline_mse=degenerate.mean_image_mse(images),
    ):
        notice(line)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"bundle {model.folder} on {result['test_images']} test images")
    print(f"  reconstruction MSE   {result['reconstruction_mse']:.5f}")
    print(f"  classifier accuracy  {result['classifier_accuracy']:.4f}")
    per_class = result["per_class_accuracy"]
    per_class = ", ".join(f"{name} {a:.3f}" for name, a in per_class.items() if a is not None)
    print(f"  per class            {per_class}")
    photos = result["photo_images"]
    print(f"  photo accuracy       {result['photo_accuracy']:.4f} ({photos} test images as product photos)")
    if result["head_accuracy_recorded"] is not None:
        head = result["head_accuracy_recorded"]
        print(f"  head, frozen encoder {head:.4f} (the seed's experiment; recorded by the training run)")
    print(f"  VAE ELBO             {result['vae_elbo']:.1f} nats/image")
    print(f"  {bits_per_dim_line(result)}")
    floors = result["frechet_floors"]
    print(
        "  Frechet distance in the reference network's features (lower is better); floors: "
        f"training images {floors['training_images']:.2f}, test reconstructions {floors['test_reconstructions']:.2f}"
    )
    for name, s in result["samplers"].items():
        spread = ", ".join(f"{c} {f:.0%}" for c, f in s["class_spread"].items())
        print(
            f"  {name:8s} Frechet {s['frechet_distance']:.2f}, mean top-class p "
            f"{s['mean_top_probability']:.3f}; classes: {spread}"
        )
    return 0
    print(f"bundle {model.folder} on {result['test_images']} test images")
    print(f"  reconstruction MSE   {result['reconstruction_mse']:.5f}")
    print(f"  classifier accuracy  {result['classifier_accuracy']:.4f}")
    per_class = result["per_class_accuracy"]
    per_class = ", ".join(f"{name} {a:.3f}" for name, a in per_class.items() if a is not None)
    print(f"  per class            {per_class}")
    print(f"  VAE ELBO             {result['vae_elbo']:.1f} nats/image")
    for name, s in result["samplers"].items():
        spread = ", ".join(f"{c} {f:.0%}" for c, f in s["class_spread"].items())
        print(
            f"  {name:8s} Frechet {s['frechet_distance']:.3f}, mean top-class p "
            f"{s['mean_top_probability']:.3f}; classes: {spread}"
        )
    return 0


# --------------------------------------------------------------------------- parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage error is one line and exit code 2, like every other fmnist error."""
        print_error(f"{message} (see {self.prog} --help)")
        sys.exit(2)


def _bundle_options(p: argparse.ArgumentParser, images: bool) -> None:
    from fmnist.runtime.images import INVERT_CHOICES
    from fmnist.runtime.limits import MAX_PIXELS
    from fmnist.runtime.sessions import PROVIDERS

    if images:
        images_help = "image files (any format Pillow reads) or folders of them"
        p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help=images_help)
        p.add_argument(
            "--invert",
            choices=INVERT_CHOICES,
            default="auto",
            help="invert to light-on-dark: auto (from the border pixels), yes, no (default: auto)",
        )
        p.add_argument(
            "--max-pixels",
            type=int,
            default=MAX_PIXELS,
            metavar="N",
            help="refuse images of more pixels (width x height), judged from their header before "
            f"decoding, as `fmnist serve` does (default: {MAX_PIXELS:,}, 2048x2048)",
        )
    p.add_argument(
        "--artifacts",
        type=Path,
        help="bundle folder (default: $FMNIST_ARTIFACTS, else ./artifacts if it holds a bundle, "
        "else the bundled model)",
    )
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="auto",
        help="onnxruntime provider: auto (CUDA when this onnxruntime has it, else the CPU without a word), cpu, "
        "or cuda (the CPU with a one-line notice when CUDA is missing or fails to start) (default: auto)",
    )


def _scale_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        type=_scale,
        default=DEFAULT_SCALE,
        help=f"PNG pixels per image pixel, nearest neighbour; 1 keeps 28x28 (default: {DEFAULT_SCALE}, 112 px)",
    )


def _scale(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_SCALE}, not {text!r}")
    return value


def _json_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--json", dest="as_json", action="store_true", help=help)


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of inference command ``name`` (one of COMMANDS)."""
    from fmnist.runtime.sampling import MAX_GENERATE

    parsers = {}

    def command(func, images: bool) -> argparse.ArgumentParser:
        p = parsers[func.__name__] = _Parser(prog=f"fmnist {func.__name__}", description=func.__doc__)
        p.set_defaults(func=func)
        _bundle_options(p, images)
        return p

    p = command(generate, images=False)
    p.add_argument("--n", type=int, default=16, help=f"how many images, 1 to {MAX_GENERATE:,} (default: 16)")
    p.add_argument("--sampler", default="kde", help=SAMPLER_HELP)
    p.add_argument("--seed", type=int, default=0, help="same seed, same images (default: 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("samples.png"),
        help="a .png (one grid), a .npy (float32 [n,28,28] in [0,1]) or a folder (one PNG each) (default: samples.png)",
    )
    _scale_flag(p)

    p = command(classify, images=True)
    top_k_help = "classes to show per image, most likely first, 1 to 10 (default: 1)"
    p.add_argument("--top-k", type=int, default=1, help=top_k_help)
    _json_flag(p, 'print one JSON array of {"path", "label", "class", "probability"} (with --top-k > 1 also "top_k")')

    p = command(reconstruct, images=True)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reconstructions.png"),
        help="PNG: originals (top row) above reconstructions (default: reconstructions.png)",
    )
    _scale_flag(p)

    p = command(encode, images=True)
    _json_flag(p, 'print a JSON array of {"path", "latent"}')
    p.add_argument("--out", type=Path, help="write the latents as a float32 .npy [N, d]")

    p = command(evaluate, images=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding FashionMNIST/raw (default: $FMNIST_DATA, else the folder the bundle was exported with "
        "if it exists here, else $XDG_CACHE_HOME/fmnist or ~/.cache/fmnist)",
    )
    _json_flag(p, "print one JSON object")
    p.add_argument("--seed", type=int, default=0, help="seed for the VAE noise and the samplers (default: 0)")
    return parsers[name]


def run(argv: list[str]) -> int:
    """Parse and run one inference command, ``argv[0]`` in COMMANDS; returns the exit code
    (argparse exits itself on --help and on usage errors)."""
    # intermixed: options may sit between the image paths, as they could with click
    args = vars(build_parser(argv[0]).parse_intermixed_args(argv[1:]))
    func = args.pop("func")
    try:
        code = func(**args)
        sys.stdout.flush()  # a closed pipe (| head) shows here, inside the try
        return code
    except (FmnistError, KeyboardInterrupt) as e:
        return report_error(e)
    except BrokenPipeError:  # the reader went away: stop quietly, as click did
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (a test runner's capture)
        pass


def register(app) -> None:
    """List the inference commands in the Typer app; each forwards its arguments to :func:`run`."""
    import typer

    settings = {"allow_extra_args": True, "ignore_unknown_options": True}
    for func in (generate, classify, reconstruct, encode, evaluate):
        forward = _forwarder(func.__name__, typer)
        app.command(func.__name__, help=func.__doc__, add_help_option=False, context_settings=settings)(forward)


def _forwarder(name: str, typer):
    def forward(ctx) -> None:
        raise typer.Exit(run([name, *ctx.args]))

    forward.__annotations__ = {"ctx": typer.Context}  # a real class: this module defers its annotations
    return forward
