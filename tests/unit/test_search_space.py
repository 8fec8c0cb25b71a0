import optuna
import pytest

from fmnist.config import DEFAULTS
from fmnist.errors import ConfigError
from fmnist.training.search_space import TARGETS, Param, resolve_space


def test_the_seed_search_space():
    ae = {p.name: (p.low, p.high, p.log, p.kind) for p in TARGETS["ae"].space}
    assert ae == {
        "latent_dim": (2, 12, True, int),
        "lr": (1e-5, 1e-3, True, float),  # the seed's log scale: a uniform draw is 1e-4 or more 9 times in 10
        "l1": (1e-6, 1e-3, True, float),
        "l2": (1e-6, 1e-3, True, float),
    }
    assert [(p.name, p.low, p.high, p.kind) for p in TARGETS["classifier"].space] == [("head_width", 16, 128, int)]
    assert (TARGETS["ae"].trials, TARGETS["classifier"].trials) == (15, 10)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_range_end_is_a_valid_config_value_and_suggests_its_type(target):
    for p in TARGETS[target].space:
        for end in (p.low, p.high):
            value = p.suggest(optuna.trial.FixedTrial({p.name: p.kind(end)}))
            assert type(value) is p.kind and getattr(DEFAULTS.updated(**{p.name: value}), p.name) == end


def test_range_flags_narrow_the_space_and_are_checked():
    space = resolve_space("ae", {"latent_dim": (3.0, 5.0), "lr": None, "head_width": None})
    assert space[0] == Param("latent_dim", 3, 5, log=True, kind=int) and space[1] == TARGETS["ae"].space[1]
    with pytest.raises(ConfigError, match="--l2-range 0.1 0.01: LOW must be below HIGH"):
        resolve_space("ae", {"l2": (0.1, 0.01)})
    with pytest.raises(ConfigError, match="--latent-dim-range is for `fmnist tune ae`"):
        resolve_space("classifier", {"latent_dim": (2, 4)})
