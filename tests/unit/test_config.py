import json

import pytest

from fmnist.config import DEFAULTS, Config
from fmnist.errors import ConfigError


def test_updated_ignores_none_and_rejects_unknown_keys():
    c = DEFAULTS.updated(lr=0.01, latent_dim=None)
    assert c.lr == 0.01 and c.latent_dim == DEFAULTS.latent_dim
    with pytest.raises(ConfigError, match="unknown hyper-parameter"):
        DEFAULTS.updated(learning_rate=0.1)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("lr", 0.0, "--lr"),
        ("latent_dim", 0, "--latent-dim"),
        ("batch_size", 0, "--batch-size"),
        ("l1", -1.0, "--l1"),
        ("epochs", 0, "--epochs"),
        ("arch", "resnet", "--arch"),
    ],
)
def test_out_of_range_values_name_the_flag(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        DEFAULTS.updated(**{field: value})


def test_json_round_trip(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(DEFAULTS.updated(latent_dim=5, l1=1e-4).to_dict()))
    assert Config.from_json(path) == Config(latent_dim=5, l1=1e-4)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json(path)


@pytest.mark.parametrize("command", [["train"], ["tune", "ae"]], ids=["train", "tune"])
def test_every_hyper_parameter_is_a_flag_of_train_and_tune(command):
    import dataclasses

    from typer.testing import CliRunner

    from fmnist.cli.app import app
    from fmnist.cli.flags import declaration

    help_text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output
    for f in dataclasses.fields(Config):
        for spelling in declaration(f).split("/"):
            assert spelling in help_text, f.name


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("seed", -1, "--seed"),
        ("seed", 2**76, "--seed"),
        ("val_fraction", 1.0, "--val-fraction"),
        ("aug_blur", 2.0, "--aug-blur"),
    ],
)
def test_every_range_error_names_the_flag(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        DEFAULTS.updated(**{field: value})


def test_the_seed_range_is_32_bit():
    from fmnist.config import SEED_MAX

    assert SEED_MAX == 2**32 - 1 and DEFAULTS.updated(seed=SEED_MAX).seed == SEED_MAX
    with pytest.raises(ConfigError, match=r"--seed must be a whole number from 0 to 4,294,967,295 \(2\*\*32 - 1\)"):
        DEFAULTS.updated(seed=SEED_MAX + 1)


def test_a_saved_config_keeps_the_behaviour_of_fields_it_predates(tmp_path):
    from fmnist.config import LEGACY_VALUES

    old_run = {"latent_dim": 8, "epochs": None}  # saved before head_noise, aug_plain and aug_flip existed
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old_run))
    saved, params = Config.from_json(path, saved=True), Config.from_json(path)
    for name, value in LEGACY_VALUES.items():
        assert getattr(saved, name) == value != getattr(params, name)
    assert Config.from_saved(Config(aug_flip=0.25).to_dict()).aug_flip == 0.25  # saved values win


def test_a_checkpoint_saved_before_the_new_fields_resumes_as_it_began(tmp_path):
    import lightning as L
    import torch

    from fmnist.training.modules import AEModule, load_module

    old = {k: v for k, v in Config(epochs=25).to_dict().items() if k not in ("head_noise", "aug_plain", "aug_flip")}
    module = AEModule(old)
    path = tmp_path / "last.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": {"config": old}}
    torch.save({**checkpoint, "pytorch-lightning_version": L.__version__}, path)
    config = load_module("ae", str(path)).config  # what train_one resumes with
    assert (config.epochs, config.head_noise, config.aug_plain, config.aug_flip) == (25, 0.0, 0.0, 0.0)
