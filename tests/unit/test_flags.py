"""Flags are made from dataclass fields by one mechanism (fmnist.cli.flags), for serve, train and tune."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import typer
from typer.testing import CliRunner

from fmnist.cli.flags import Command, flag_parameters, pick, with_flags
from fmnist.config import hyper


@dataclass(frozen=True)
class Toy:
    rate: float = hyper(0.5, "A rate.")
    size: int | None = hyper(None, "A size.", shown="each model's own")
    scale: tuple[float, float] = hyper((0.8, 1.1), "A range.")
    mode: str = hyper("fast", "A mode.", choices=("fast", "slow"))
    keep: bool = hyper(True, "Keep it.", flag="--keep/--drop")
    brand_new: bool = hyper(False, "A field added later.")


def toy_app(unset: bool) -> tuple[typer.Typer, dict]:
    seen: dict = {}

    def command(**values):
        seen.update(pick(Toy, values))

    app = typer.Typer()
    app.command(cls=Command)(with_flags(command, flag_parameters(Toy, panel="Toy", unset=unset)))
    app.command("other")(lambda: None)  # two commands: the toy is invoked by name
    return app, seen


def test_every_field_is_a_flag_with_its_help_and_default():
    app, _ = toy_app(unset=True)
    help_text = CliRunner().invoke(app, ["command", "--help"], env={"COLUMNS": "200"}).output
    for text in (
        "--rate",
        "A rate. [default: 0.5]",
        "--size",
        "[default: each model's own]",
        "--scale",
        "LOW HIGH",
        "[default: 0.8 1.1]",
        "fast|slow",
        "--keep",
        "--drop",
        "[default: keep]",
        "--brand-new",
        "--no-brand-new",
        "[default: no-brand-new]",
    ):
        assert text in help_text, text
    assert "<bool>" not in help_text  # neither the bool flags nor --help show a type


def test_unset_flags_are_none_and_given_ones_parse_to_the_field_type():
    app, seen = toy_app(unset=True)
    result = CliRunner().invoke(app, ["command", "--scale", "0.5", "1.0", "--drop", "--size", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {"rate": None, "size": 3, "scale": (0.5, 1.0), "mode": None, "keep": False, "brand_new": None}
    app, seen = toy_app(unset=False)
    assert CliRunner().invoke(app, ["command"]).exit_code == 0
    assert seen == {"rate": 0.5, "size": None, "scale": (0.8, 1.1), "mode": "fast", "keep": True, "brand_new": False}


def test_a_new_config_field_is_a_new_train_flag():
    from fmnist.config import Config

    names = {p.name for p in flag_parameters(Config)}
    assert names == set(Config.__dataclass_fields__)


def run_fmnist(*args: str) -> subprocess.CompletedProcess:
    """``fmnist ARGS`` in-process in a fresh interpreter, then whether torch was imported."""
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom fmnist.cli.app import app\n"
        f"r = CliRunner().invoke(app, {list(args)!r})\n"
        "print(r.exit_code, 'torch' in sys.modules)\nprint(r.stderr, file=sys.stderr)"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)


def test_a_bad_choice_is_one_line_before_torch_loads(tmp_path):
    cases = [
        (["train", "--model", "gan"], "--model must be one of ae, head, classifier, vae or all, not 'gan'"),
        (["train", "--arch", "resnet"], "--arch must be one of seed, wide, medium, not 'resnet'"),
        (["train", "--seed", "-1"], "--seed must be a whole number from 0 to 4,294,967,295 (2**32 - 1), not -1"),
        (["tune", "vae"], "TARGET must be one of ae, classifier"),
        (["tune", "ae", "--lr-schedule", "steps"], "--lr-schedule must be one of cosine, constant"),
    ]
    for args, message in cases:
        result = run_fmnist(*args, "--run-dir", str(tmp_path / "r"))
        assert result.stdout.split() == ["2", "False"], (args, result.stdout, result.stderr)
        line = result.stderr.strip()
        assert line.startswith("fmnist: error: ") and message in line and "\n" not in line, args
    assert not (tmp_path / "r").exists()


def test_a_mistyped_flag_gets_a_close_match():
    from fmnist.cli.app import app

    for command in (["train"], ["tune", "ae"], ["export"], ["report"]):
        result = CliRunner().invoke(app, [*command, "--run_dir", "x"], env={"COLUMNS": "200"})
        assert result.exit_code == 2, command
        assert "No such option: --run_dir (Possible options:" in result.output and "--run-dir)" in result.output


def test_the_training_commands_share_one_help_style():
    import re

    from fmnist.cli.app import app

    for command in (["train"], ["tune"], ["export"], ["report"], []):
        text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output
        assert "(default:" not in text and "<bool>" not in text, command
        assert not re.search(r"\bRUN\b", text), command  # the run folder is named as its flag, --run-dir
        if command in (["train"], ["tune"]):
            assert re.search(r"--precision .*\[default: 32\]", text)
            assert re.search(r"--from-study +Hyper", text) or command == ["tune"]


def test_serve_takes_and_shows_max_pixels_as_width_x_height(monkeypatch):
    from fmnist.cli import serve as serve_cli
    from fmnist.cli.app import app

    seen = {}
    monkeypatch.setattr(serve_cli, "run", lambda artifacts, settings, *rest: seen.update(settings=settings))
    runner = CliRunner()
    assert runner.invoke(app, ["serve"]).exit_code == 0  # the default goes through the parser too
    assert seen["settings"].max_pixels == 2048 * 2048
    assert runner.invoke(app, ["serve", "--max-pixels", "100x50"]).exit_code == 0
    assert seen["settings"].max_pixels == 5000
    assert runner.invoke(app, ["serve", "--max-pixels", "4096"]).exit_code == 0
    assert seen["settings"].max_pixels == 4096
    bad = runner.invoke(app, ["serve", "--max-pixels", "10x"])
    assert bad.exit_code == 2 and "expected WIDTHxHEIGHT" in bad.output
    shown = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    (line,) = [x for x in shown.splitlines() if "--max-pixels" in x]
    assert "WIDTHxHEIGHT" in line and "[default: 2048x2048]" in line
