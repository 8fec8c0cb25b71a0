"""What the inference commands' cold start skips must not change what they do: the one-pass
parse, the paused garbage collector, the default bundle found without importlib.resources."""

from __future__ import annotations

import argparse
import gc
from importlib import resources
from pathlib import Path

import pytest

from fmnist import artifacts
from fmnist.cli import inference


@pytest.mark.parametrize(
    "argv",
    [
        ["classify", "a.png"],
        ["classify", "a.png", "b.png", "--top-k", "3", "--json"],
        ["classify", "--jobs", "2", "a.png", "--invert", "no", "b.png", "--jsonl"],  # intermixed
        ["classify", "a.png", "--max-pixels", "64x64", "b.png", "c.png", "--top-k", "2"],
        ["classify", "a.png", "--", "-b.png"],
        ["reconstruct", "a.png", "--labels", "b.png", "--scale", "2", "--out", "r.png"],
        ["encode", "a.png", "--out", "z.npy", "b.png"],
        ["generate", "--n", "4", "--sampler", "vae", "--seed", "3", "--class", "Bag", "--out", "s.png"],
        ["evaluate", "--json", "--seed", "1"],
    ],
)
def test_the_one_pass_parse_gives_argparses_intermixed_result(argv):
    parser = inference.build_parser(argv[0])
    assert parser.parse_intermixed_args(argv[1:]) == argparse.ArgumentParser.parse_intermixed_args(parser, argv[1:])


@pytest.mark.parametrize("argv", [["classify"], ["classify", "a.png", "--top-k", "x"], ["generate", "b.png"]])
def test_usage_errors_are_those_of_the_intermixed_parse(argv, capsys):
    parser = inference.build_parser(argv[0])
    with pytest.raises(SystemExit) as ours:
        parser.parse_intermixed_args(argv[1:])
    mine = capsys.readouterr().err
    with pytest.raises(SystemExit) as theirs:
        argparse.ArgumentParser.parse_intermixed_args(parser, argv[1:])
    assert ours.value.code == theirs.value.code == 2
    assert mine == capsys.readouterr().err and mine.startswith("fmnist: error: ")


def test_each_command_builds_only_its_own_parser():
    for name in inference.COMMANDS:
        parser = inference.build_parser(name)
        assert parser.prog == f"fmnist {name}" and parser.get_default("func").__name__ == name


def test_the_collector_is_off_while_a_command_starts_and_as_it_was_after(monkeypatch):
    seen = []

    def command(**_) -> int:
        seen.append(gc.isenabled())
        return 0

    _, images, options = inference._COMMANDS["classify"]
    monkeypatch.setitem(inference._COMMANDS, "classify", (command, images, options))
    assert gc.isenabled()
    assert inference.run(["classify", "a.png"]) == 0
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        inference.run(["classify", "a.png"])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_long_stream_turns_the_collector_back_on(tmp_path):
    from fmnist.runtime.stream import CHUNK

    paths = [tmp_path / f"{i}.png" for i in range(CHUNK + 1)]
    with inference._collector_paused():
        inference._stream(paths[:2], "auto", 10**6, 1)
        assert not gc.isenabled()  # a few images: the start-up is the whole run
        inference._stream(paths, "auto", 10**6, 1)
        assert gc.isenabled()  # many: memory must stay bounded, in this process and its decoders


def test_the_default_bundle_is_where_importlib_resources_finds_it():
    assert artifacts.default_bundle_dir() == Path(str(resources.files("fmnist") / "default_bundle"))
    assert (artifacts.default_bundle_dir() / artifacts.MANIFEST).is_file()
