"""Checkpoints are written beside their final name and renamed: whole or not there at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from fmnist.config import DEFAULTS
from fmnist.training.modules import MODULES
from fmnist.training.run import Hardware, make_trainer


@pytest.fixture
def checkpoint_io(tmp_path):
    trainer = make_trainer(
        DEFAULTS.updated(epochs=1), tmp_path / "ae", MODULES["ae"], Hardware(accelerator="cpu", progress=False)
    )
    return trainer.strategy.checkpoint_io


def test_a_checkpoint_is_renamed_into_place_from_its_own_folder(checkpoint_io, tmp_path, monkeypatch):
    """Staged in $TMPDIR instead, the rename is a copy when $TMPDIR is another filesystem, and a kill
    during that copy left last.ckpt empty."""
    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    moves = []
    for module, name in ((os, "replace"), (os, "rename"), (shutil, "move")):
        original = getattr(module, name)

        def move(src, dst, *args, original=original, **kwargs):
            moves.append((Path(src), Path(dst)))
            return original(src, dst, *args, **kwargs)

        monkeypatch.setattr(module, name, move)
    target = tmp_path / "ae" / "last.ckpt"
    checkpoint_io.save_checkpoint({"epoch": 1}, target)
    assert torch.load(target, weights_only=False) == {"epoch": 1}
    assert moves and all(src.parent == dst.parent == target.parent for src, dst in moves)
    assert not list(elsewhere.iterdir())


def test_a_save_cut_short_leaves_the_previous_checkpoint_whole(checkpoint_io, tmp_path, monkeypatch):
    target = tmp_path / "ae" / "last.ckpt"
    checkpoint_io.save_checkpoint({"epoch": 1}, target)

    def killed(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_io.save_checkpoint({"epoch": 2}, target)
    assert torch.load(target, weights_only=False) == {"epoch": 1}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
