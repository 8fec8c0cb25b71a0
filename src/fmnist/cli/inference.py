"""Inference commands: generate, classify, reconstruct, encode, evaluate.

They are parsed with argparse and import numpy, onnxruntime and Pillow inside their bodies (never
torch, scikit-learn or typer), so ``fmnist classify one.png`` starts in about a quarter of a
second: ``fmnist.__main__`` sends these commands straight to :func:`run`, and ``register(app)``
lists them in the Typer app, which forwards its arguments here unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

from fmnist.cli.outputs import check_file, check_folder, check_not_inputs
from fmnist.errors import FmnistError, InputError, Interrupted, print_error, report_error
from fmnist.runtime.limits import check_seed

DEFAULT_SCALE, MAX_SCALE = 4, 16  # 4: a 28-pixel image shows at 112 px, a size a person can look at


def _bundle(artifacts: Path | None, provider: str, threads: int | None = None):
    """The bundle to run (``threads``: onnxruntime's per call, None its default); when the user
    named none, one line on stderr says which was taken."""
    from fmnist.artifacts import ENV_VAR
    from fmnist.runtime.bundle import Bundle

    model = Bundle(artifacts, provider, threads)
    if artifacts is None and not os.environ.get(ENV_VAR):
        from fmnist.runtime.sessions import notice

        notice(bundle_notice(model.folder, model.manifest))
    return model


def bundle_notice(folder: Path, manifest: dict) -> str:
    """Which bundle a command took by itself, and the run it was exported from."""
    from fmnist.artifacts import ENV_VAR, default_bundle_dir

    provenance = manifest.get("provenance") or {}
    run = provenance.get("run_dir") or "an unrecorded run"
    commit = str(provenance.get("git_commit") or "")[:7]
    which = "the bundled model" if folder == default_bundle_dir() else "the bundle"
    return (
        f"using {which} in {folder}, exported from {run}{f' (commit {commit})' if commit else ''}; "
        f"choose one with --artifacts or ${ENV_VAR}"
    )


def _expand(images: list[Path]) -> list[Path]:
    from fmnist.runtime.images import expand_inputs

    return expand_inputs(images)


def _stream(
    paths: list[Path],
    invert: str,
    max_pixels: int,
    jobs: int | None,
    outs: tuple[Path, ...] = (),
    batch: int | None = None,
):
    """The readable images among ``paths``, streamed; checked first: the limits, and that no
    output path is one of the inputs."""
    from fmnist.runtime.stream import BATCH, CHUNK, ImageStream, default_jobs

    if max_pixels < 28 * 28:
        raise InputError(f"--max-pixels must be >= {28 * 28}, not {max_pixels}")
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, not {jobs}")
    check_not_inputs(outs, paths)
    if len(paths) > CHUNK:  # more than one chunk: decoded by a pool, or at length in-process
        _long_run()
    # classify and encode print a first small batch at once; reconstruct's batches fill its grids
    first = None if batch else CHUNK
    return ImageStream(paths, invert, max_pixels, jobs, batch or BATCH, flag="--max-pixels", first=first)


def _finish(stream) -> int:
    """Exit code 1 when some (not all) inputs could not be read."""
    return 1 if stream.failed else 0


class _Rows:
    """Result rows on stdout a batch at a time: text lines, one JSON array (--json; written as it
    grows, the same text as json.dumps of the whole list) or one JSON object per line (--jsonl)."""

    def __init__(self, style: str, text) -> None:
        self.style, self.text, self.count, self.pending = style, text, 0, []  # text(row): its line

    def write(self, row: dict) -> None:
        if self.style == "json":
            self.pending.append(("[" if self.count == 0 else ", ") + json.dumps(row))
        else:
            self.pending.append((json.dumps(row) if self.style == "jsonl" else self.text(row)) + "\n")
        self.count += 1

    def flush(self) -> None:
        """The batch's rows in one write: the reader sees each batch as it is done."""
        sys.stdout.write("".join(self.pending))
        sys.stdout.flush()
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        if self.style == "json":
            print("]" if self.count else "[]")


def generate(
    n: int,
    sampler: str,
    seed: int,
    out: Path,
    scale: int,
    artifacts: Path | None,
    provider: str,
    label: str | None = None,
) -> int:
    """Generate new garments from the bundle's latent samplers."""
    import numpy as np

    from fmnist.runtime.images import png_bytes, to_png, to_uint8, upscale
    from fmnist.runtime.sampling import check_generate

    check_seed(seed)
    check_generate(n, sampler)
    folder = out.suffix.lower() not in (".png", ".npy")
    if folder and (out.suffix or out.exists()) and not out.is_dir():
        raise InputError(f"--out {out}: give a .png (one grid), a .npy or a folder (a name without a suffix)")
    if folder:
        check_folder(out)
    else:
        check_file(out, (".png", ".npy"))
    from fmnist.contract import parse_class

    model = _bundle(artifacts, provider)
    label = None if label is None else parse_class(label, model.class_names)
    images = model.generate(n, sampler, seed, label)
    if out.suffix.lower() == ".png":
        out.write_bytes(to_png(images, scale=scale))
    elif out.suffix.lower() == ".npy":
        np.save(out, images.astype(np.float32))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_uint8(images)):
            (out / f"sample-{i:05d}.png").write_bytes(png_bytes(upscale(img, scale)))
    of = "" if label is None else f" of {model.class_names[label]}"
    print(f"wrote {n} {sampler} sample{'' if n == 1 else 's'}{of} to {out}")
    return 0


def classify(
    images: list[Path],
    top_k: int,
    style: str,
    invert: str,
    max_pixels: int,
    jobs: int | None,
    artifacts: Path | None,
    provider: str,
) -> int:
    """Classify images: the garment class and its probability."""
    from fmnist.runtime.bundle import top_classes

    if not 1 <= top_k <= 10:
        raise InputError(f"--top-k must be between 1 and 10, not {top_k}")
    with _stream(_expand(images), invert, max_pixels, jobs) as stream:
        model = _bundle(artifacts, provider, stream.model_threads())
        rows = _Rows(style, _classified_line)
        for paths, batch in stream:
            _no_garment_notices(paths, batch)
            for path, ranked in zip(paths, top_classes(model.classify(batch), model.class_names, top_k), strict=True):
                rows.write({"path": str(path), **ranked[0], **({"top_k": ranked} if top_k > 1 else {})})
            rows.flush()
        rows.close()
    return _finish(stream)


def _classified_line(row: dict) -> str:
    return f"{row['path']}: " + ", ".join(f"{c['class']} {c['probability']:.3f}" for c in row.get("top_k", [row]))


def _no_garment_notices(paths: list[Path], batch) -> None:
    from fmnist.runtime.images import blank_mask
    from fmnist.runtime.sessions import notice

    for path, blank in zip(paths, blank_mask(batch), strict=True):
        if blank:
            notice(f"{path}: no garment found (the image is blank or one flat colour), its class is a guess")


def reconstruct(
    images: list[Path],
    out: Path,
    scale: int,
    labels: bool,
    invert: str,
    max_pixels: int,
    jobs: int | None,
    artifacts: Path | None,
    provider: str,
) -> int:
    """Reconstruct images through the autoencoder; prints each image's MSE."""
    import math

    from fmnist.runtime.images import pairs_per_grid
    from fmnist.runtime.stream import BATCH

    check_file(out, (".png",))
    per_grid, paths = pairs_per_grid(scale), _expand(images)
    grids = grid_files(out, len(paths), per_grid)
    for path in grids[1:]:
        check_file(path, (".png",))
    # batches that fill each grid exactly
    with _stream(paths, invert, max_pixels, jobs, tuple(grids), batch=math.gcd(per_grid, BATCH)) as stream:
        model = _bundle(artifacts, provider, stream.model_threads())
        done, parts = 0, []
        for paths, batch in stream:
            recon = model.reconstruct(batch)
            for path, mse in zip(paths, ((recon - batch) ** 2).mean((1, 2)), strict=True):
                print(f"{path}: mse {mse:.5f}")
            parts.append((batch, recon))
            if sum(len(b) for b, _ in parts) == per_grid:
                _write_grid(grids[done], parts, scale, labels)
                done, parts = done + 1, []
        if parts:
            _write_grid(grids[done], parts, scale, labels)
    return _finish(stream)


def grid_files(out: Path, count: int, per_grid: int) -> list[Path]:
    """``out`` when one grid holds ``count`` images, else OUT-0001.png, OUT-0002.png, ... beside it."""
    if count <= per_grid:
        return [out]
    return [out.with_name(f"{out.stem}-{k:04d}{out.suffix}") for k in range(1, -(-count // per_grid) + 1)]


def _write_grid(path: Path, parts: list, scale: int, labels: bool) -> None:
    """Originals above their reconstructions, GRID_COLUMNS pairs a row, labelled on request."""
    import numpy as np

    from fmnist.runtime.images import GRID_COLUMNS, label_rows, paired_grid, png_bytes

    originals, recon = (np.concatenate(a) for a in zip(*parts, strict=True))
    array = paired_grid(originals, recon, GRID_COLUMNS, scale=scale)
    if labels:
        array = label_rows(array, ("input", "recon."), scale)
    path.write_bytes(png_bytes(array))
    print(f"wrote {path}")
    sys.stdout.flush()


def encode(
    images: list[Path],
    style: str,
    out: Path | None,
    invert: str,
    max_pixels: int,
    jobs: int | None,
    artifacts: Path | None,
    provider: str,
) -> int:
    """Encode images to their latent vectors."""
    from fmnist.runtime.stream import rows_to_npy

    if out is not None:
        check_file(out, (".npy",))
    with _stream(_expand(images), invert, max_pixels, jobs, (out,) if out else ()) as stream:
        model = _bundle(artifacts, provider, stream.model_threads())
        latents = ((paths, model.encode(batch)) for paths, batch in stream)
        if out is not None:
            n = rows_to_npy(out, (z for _, z in latents))
            print(f"wrote {n}x{model.latent_dim} latents to {out}")
            return _finish(stream)
        rows = _Rows(style, lambda row: f"{row['path']}: " + " ".join(f"{v:.4f}" for v in row["latent"]))
        for paths, batch in latents:
            for p, z in zip(paths, batch, strict=True):
                rows.write({"path": str(p), "latent": z.tolist()})
            rows.flush()
        rows.close()
    return _finish(stream)


def evaluate(data_dir: Path | None, as_json: bool, seed: int, artifacts: Path | None, provider: str) -> int:
    """Evaluate the bundle alone on the official test set: AE MSE, accuracy (also on product photos),
    VAE ELBO, and sample quality in the fixed reference network's features."""
    from fmnist import degenerate
    from fmnist.config import default_data_dir
    from fmnist.runtime.evaluation import (
        bits_per_dim_line,
        class_conditional_quality,
        evaluate_bundle,
        load_split,
        recorded_data_dir,
    )
    from fmnist.runtime.progress import Progress
    from fmnist.runtime.sessions import notice

    check_seed(seed)
    _long_run()
    model = _bundle(artifacts, provider)
    root = data_dir or default_data_dir(recorded_data_dir(model.manifest))
    images, labels = load_split(root, "t10k")
    train_images, _ = load_split(root, "train")
    result = evaluate_bundle(model, images, labels, train_images, seed, progress=Progress.on_terminal(quiet=as_json))
    result["class_conditional"] = class_conditional_quality(model, images, labels, seed=seed)
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
    _print_class_conditional(result["class_conditional"])
    return 0


def _print_class_conditional(figures: dict | None) -> None:
    if figures is None:
        print("  per-class samples    none: a format-1 bundle (python -m fmnist.export.refit adds them)")
        return
    print(
        f"  per-class {figures['sampler']} samples ({figures['samples_per_class']:,} per class): the share the "
        "reference network assigns to the class, of samples / of reconstructions of its test images; "
        "Frechet to its test images"
    )
    for name, c in figures["classes"].items():
        ratio = "-" if c["share_ratio"] is None else f"{c['share_ratio']:.2f}"
        print(
            f"    {name:12s} {c['sample_share']:.3f} / {c['reconstruction_share']:.3f} (ratio {ratio}), "
            f"Frechet {c['frechet_distance']:.2f}"
        )


# --------------------------------------------------------------------------- parsing


class _Help(argparse.HelpFormatter):
    """Help read as the Typer commands' reads: each option's default as ``[default: X]`` after
    its text (unless the text shows it already)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        takes_value = action.option_strings and action.nargs != 0  # not a switch such as --json
        if takes_value and action.default not in (None, argparse.SUPPRESS) and "[default:" not in text:
            text += " [default: %(default)s]"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs) -> None:
        self._width: int | None = None
        super().__init__(formatter_class=_Help, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        # argparse makes a formatter per argument only to check its metavar; at a fixed width it
        # skips the terminal's, whose shutil import costs the cold start 3 ms (help needs it, not this)
        self._width = 80
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._width = None

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=self._width)

    def parse_intermixed_args(self, args=None, namespace=None) -> argparse.Namespace:
        """A command line whose image paths come together (nearly every one) parses in one plain
        pass, to the same result: argparse's intermixed parsing starts by formatting the whole
        usage for its error messages (4 ms of the cold start), which ours never show. A ``--``
        is left to argparse's intermixed parsing, whose reading of it differs."""
        args = sys.argv[1:] if args is None else list(args)
        if "--" not in args:
            parsed, extras = self.parse_known_args(args, namespace)
            if not extras:
                return parsed
        return super().parse_intermixed_args(args, namespace)

    def error(self, message: str):
        """A usage error is one line and exit code 2, like every other fmnist error; a mistyped
        flag gets the nearest real one."""
        print_error(f"{message}{self._did_you_mean(message)} (see {self.prog} --help)")
        sys.exit(2)

    def _did_you_mean(self, message: str) -> str:
        import difflib

        if not message.startswith("unrecognized arguments: "):
            return ""
        flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        for token in message.split(": ", 1)[1].split():
            typed = token.split("=", 1)[0]
            if typed.startswith("-"):
                close = difflib.get_close_matches("--" + typed.lstrip("-").replace("_", "-"), flags, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


def _bundle_options(p: argparse.ArgumentParser, images: bool) -> None:
    from fmnist.runtime.images import INVERT_CHOICES
    from fmnist.runtime.sessions import PROVIDERS

    if images:
        _image_options(p, INVERT_CHOICES)
    p.add_argument(
        "--artifacts",
        type=Path,
        metavar="DIR",
        help="bundle folder [default: $FMNIST_ARTIFACTS, else ./artifacts if it holds a bundle, "
        "else the bundled model]",
    )
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        metavar="|".join(PROVIDERS),
        default="auto",
        help="onnxruntime provider: auto (CUDA when this onnxruntime has it, else the CPU without a word), cpu, "
        "or cuda (the CPU with a one-line notice when CUDA is missing or fails to start)",
    )


def _image_options(p: argparse.ArgumentParser, invert_choices: tuple[str, ...]) -> None:
    from fmnist.runtime.limits import MAX_PIXELS, shown_pixels

    p.add_argument(
        "images", nargs="+", type=Path, metavar="IMAGE", help="image files (any format Pillow reads) or folders of them"
    )
    p.add_argument(
        "--invert",
        choices=invert_choices,
        metavar="|".join(invert_choices),
        default="auto",
        help="invert to light-on-dark: auto (from the border pixels), yes, no",
    )
    p.add_argument(
        "--max-pixels",
        type=_pixels,
        default=MAX_PIXELS,
        metavar="WxH",
        help="refuse images of more pixels (2048x2048 or 4194304), judged from their header before "
        f"decoding, as `fmnist serve` does [default: {shown_pixels(MAX_PIXELS)}]",
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes decoding images in parallel with the model [default: one per core]",
    )


def _pixels(text: str) -> int:
    from fmnist.runtime.limits import parse_pixels

    try:
        return parse_pixels(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give WIDTHxHEIGHT (2048x2048) or a pixel count, not {text!r}") from None


def _scale_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        type=_scale,
        default=DEFAULT_SCALE,
        metavar="S",
        help=f"PNG pixels per image pixel, 1 to {MAX_SCALE}, nearest neighbour; 1 keeps 28x28, 4 shows a garment "
        "at 112 px",
    )


def _scale(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_SCALE}, not {text!r}")
    return value


def _json_flags(p: argparse.ArgumentParser, row: str) -> None:
    """--json (one array, as it grows) and --jsonl (one object per line), exclusive."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--json", dest="style", action="store_const", const="json", help=f"print one JSON array of {row}"
    )
    group.add_argument(
        "--jsonl", dest="style", action="store_const", const="jsonl", help=f"print one {row} per line (JSON lines)"
    )
    p.set_defaults(style="text")


def _seed_flag(p: argparse.ArgumentParser, help: str) -> None:
    from fmnist.runtime.limits import SEED_RANGE

    p.add_argument("--seed", type=int, default=0, metavar="N", help=f"{help}, {SEED_RANGE[0]} to 2**32 - 1")


def _generate_options(p: argparse.ArgumentParser) -> None:
    from fmnist.contract import samplers
    from fmnist.runtime.sampling import MAX_GENERATE

    p.add_argument("--n", type=int, default=16, metavar="N", help=f"how many images, 1 to {MAX_GENERATE:,}")
    names = [s.name for s in samplers.SAMPLERS]
    p.add_argument(
        "--sampler", default=samplers.DEFAULT, choices=names, metavar="|".join(names), help=samplers.help_text()
    )
    _seed_flag(p, "same seed, same images")
    p.add_argument(
        "--class",
        dest="label",
        metavar="CLASS",
        help="only this class: a label number (0-9) or a class name in any case, e.g. Sneaker "
        "(kde sampler; bundles exported since format 2) [default: any class]",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("samples.png"),
        metavar="PATH",
        help="a .png (one grid), a .npy (float32 [n,28,28] in [0,1]) or a folder (one PNG each)",
    )
    _scale_flag(p)


def _classify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="classes per image, most likely first, 1 to 10")
    _json_flags(p, '{"path", "label", "class", "probability"} (with --top-k > 1 also "top_k")')


def _reconstruct_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reconstructions.png"),
        metavar="PATH",
        help="PNG: originals above their reconstructions, 32 pairs a row; over 1,024 images (fewer at a large "
        "--scale), one PNG per 1,024 as OUT-0001.png, OUT-0002.png, ...",
    )
    _scale_flag(p)
    p.add_argument("--labels", action="store_true", help='name the rows of the grid ("input", "recon.") on its left')


def _encode_options(p: argparse.ArgumentParser) -> None:
    _json_flags(p, '{"path", "latent"}')
    p.add_argument("--out", type=Path, metavar="PATH", help="write the latents as a float32 .npy [N, d]")


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder holding FashionMNIST/raw [default: $FMNIST_DATA, else the folder the bundle was exported with "
        "if it exists here, else $XDG_CACHE_HOME/fmnist or ~/.cache/fmnist]",
    )
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object")
    _seed_flag(p, "seed for the VAE noise and the samplers")


# each command: its function, whether it reads images, its own options (after the bundle's)
_COMMANDS = {
    "generate": (generate, False, _generate_options),
    "classify": (classify, True, _classify_options),
    "reconstruct": (reconstruct, True, _reconstruct_options),
    "encode": (encode, True, _encode_options),
    "evaluate": (evaluate, False, _evaluate_options),
}
COMMANDS = tuple(_COMMANDS)


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of inference command ``name`` (one of COMMANDS); only that one is built, as a
    command's start-up is its own."""
    func, images, options = _COMMANDS[name]
    p = _Parser(prog=f"fmnist {name}", description=func.__doc__)
    p.set_defaults(func=func)
    _bundle_options(p, images)
    options(p)
    return p


def run(argv: list[str]) -> int:
    """Parse and run one inference command, ``argv[0]`` in COMMANDS; returns the exit code
    (argparse exits itself on --help and on usage errors)."""
    # intermixed: options may sit between the image paths, as they could with click
    with _collector_paused():
        args = vars(build_parser(argv[0]).parse_intermixed_args(argv[1:]))
        func = args.pop("func")
        try:
            with _sigterm_stops():
                code = func(**args)
                sys.stdout.flush()  # a closed pipe (| head) shows here, inside the try
            return code
        except (FmnistError, KeyboardInterrupt, Interrupted) as e:
            return report_error(e)
        except BrokenPipeError:  # the reader went away: stop quietly, as click did
            _silence_stdout()
            return 1


@contextlib.contextmanager
def _collector_paused():
    """The garbage collector off while a command starts: importing numpy, onnxruntime and Pillow
    makes thousands of lasting objects and no garbage, so the collections they set off are waste
    (about 4% of the cold start). A long run turns it back on (_long_run); on the way out it is
    as the caller had it."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        (gc.enable if enabled else gc.disable)()


def _long_run() -> None:
    """Work past a cold start (many images, an evaluation): the garbage collector back on, in
    this process and the decoding processes it forks, so that memory stays bounded."""
    import gc

    gc.enable()


@contextlib.contextmanager
def _sigterm_stops():
    """SIGTERM stops a command as Ctrl-C does: one line, exit code 143, the decoding processes
    ended on the way out (a plain SIGTERM would leave them writing to a closed pipe)."""
    import signal

    def stop(signum, frame):
        raise Interrupted(signum, "stopped (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test runner's worker): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    for name, (func, _, _) in _COMMANDS.items():
        app.command(name, help=func.__doc__, add_help_option=False, context_settings=settings)(_forwarder(name, typer))


def _forwarder(name: str, typer):
    def forward(ctx) -> None:
        raise typer.Exit(run([name, *ctx.args]))

    forward.__annotations__ = {"ctx": typer.Context}  # a real class: this module defers its annotations
    return forward
