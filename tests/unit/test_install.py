"""Putting a bundle at --out: a whole bundle there at every step, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest

from fmnist import artifacts
from fmnist.export import install

STEPS = (os, "rename"), (os, "replace"), (os, "symlink"), (shutil, "rmtree")


def created(folder) -> str:
    return json.loads((folder / "manifest.json").read_text())["created"]


def stage(toy_bundle, out, tag: str):
    """What export writes before installing: a whole bundle in a staging folder beside ``out``."""
    staged = install.staging_dir(out)
    shutil.copytree(toy_bundle, staged, dirs_exist_ok=True)
    manifest = json.loads((staged / "manifest.json").read_text())
    (staged / "manifest.json").write_text(json.dumps({**manifest, "created": tag}))  # not among the hashed files
    return staged


def watch_every_step(monkeypatch, out, fail_at: int | None = None) -> list[str]:
    """After each rename, link or removal, a whole bundle must load from ``out``; ``fail_at``: the
    step that raises instead, as a kill would stop the export there."""
    done = []
    for module, name in STEPS:
        original = getattr(module, name)

        def step(*args, original=original, name=name, **kwargs):
            if fail_at is not None and len(done) == fail_at:
                raise KeyboardInterrupt
            result = original(*args, **kwargs)
            artifacts.load_manifest(out)
            done.append(name)
            return result

        monkeypatch.setattr(module, name, step)
    return done


def test_a_new_out_is_a_link_to_a_version_that_the_loader_reads(toy_bundle, tmp_path):
    from fmnist.runtime.bundle import Bundle as Model

    out = tmp_path / "artifacts"
    install.install(stage(toy_bundle, out, "v1"), out)
    assert out.is_symlink() and os.readlink(out).startswith(".artifacts.v-")
    assert created(out) == "v1" and artifacts.load_manifest(out)
    assert Model(out, "cpu").classify(toy_bundle_images()).shape == (2, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["artifacts", os.readlink(out)])


def toy_bundle_images():
    import numpy as np

    return np.zeros((2, 28, 28), np.float32)


def test_replacing_a_linked_bundle_keeps_one_at_out_at_every_step(toy_bundle, tmp_path, monkeypatch):
    out = tmp_path / "artifacts"
    install.install(stage(toy_bundle, out, "v1"), out)
    first = os.readlink(out)
    staged = stage(toy_bundle, out, "v2")
    done = watch_every_step(monkeypatch, out)
    install.install(staged, out)
    assert "replace" in done and created(out) == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["artifacts", os.readlink(out)])
    assert os.readlink(out) != first  # the old version is gone


def test_a_plain_folder_stays_one_and_is_swapped_in_one_step(toy_bundle, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    shutil.copytree(toy_bundle, out)  # e.g. an older export, or the package's default_bundle
    staged = stage(toy_bundle, out, "v2")
    watch_every_step(monkeypatch, out)
    install.install(staged, out)
    assert out.is_dir() and not out.is_symlink() and created(out) == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


@pytest.mark.parametrize("fail_at", range(4))
def test_an_export_killed_at_any_step_leaves_a_whole_bundle_and_the_next_cleans_up(
    toy_bundle, tmp_path, monkeypatch, fail_at
):
    out = tmp_path / "artifacts"
    install.install(stage(toy_bundle, out, "v1"), out)
    staged = stage(toy_bundle, out, "v2")
    with monkeypatch.context() as patch:
        watch_every_step(patch, out, fail_at)
        with contextlib.suppress(KeyboardInterrupt):  # the kill
            install.install(staged, out)
    assert created(out) in ("v1", "v2")
    # what dead exports left: their process ids no longer run; a running export's staging stays
    for name in (".artifacts.tmp-999999999-x", ".artifacts.v-1-999999999", ".artifacts.old-123"):
        (tmp_path / name).mkdir()
    running = tmp_path / f".artifacts.tmp-{os.getppid()}-y"
    running.mkdir()
    install.remove_leftovers(out)  # what the next export does first
    install.install(stage(toy_bundle, out, "v3"), out)
    assert created(out) == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["artifacts", os.readlink(out), running.name])
