"""The search spaces of ``fmnist tune``, as data: one table read by the CLI (for the range flags'
defaults) and by each Optuna trial (``trial.suggest_*``). No heavy imports, so ``fmnist --help``
stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmnist.config import ENCODER_SHAPE
from fmnist.errors import ConfigError

if TYPE_CHECKING:
    from optuna.trial import Trial


@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter: a Config field and its range."""

    name: str  # a Config field; also the Optuna parameter name, so trial.params is Config-compatible
    low: float
    high: float
    log: bool
    kind: type = float  # int or float

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-") + "-range"

    def bounds(self) -> str:
        return f"{self.kind(self.low)} {self.kind(self.high)}"

    def with_range(self, bounds: tuple[float, float] | None) -> Param:
        if bounds is None:
            return self
        low, high = bounds
        if not low < high:
            raise ConfigError(f"{self.flag} {low} {high}: LOW must be below HIGH")
        if self.log and low <= 0:
            raise ConfigError(f"{self.flag} {low} {high}: a log-scale range must start above 0")
        return Param(self.name, self.kind(low), self.kind(high), self.log, self.kind)

    def suggest(self, trial: Trial) -> int | float:
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Target:
    """What ``fmnist tune TARGET`` searches and how many trials it runs by default."""

    model: str  # a key of MODULES; its objective (val_mse, val_loss) is minimised
    space: tuple[Param, ...]
    trials: int
    fixed: tuple[str, ...] = ()  # Config fields the study pins (the AE's shape for the classifier)


# The seed's search space: d an integer, lr, L1 and L2 all on a log scale.
TARGETS: dict[str, Target] = {
    "ae": Target(
        "ae",
        (
            Param("latent_dim", 2, 12, log=True, kind=int),
            Param("lr", 1e-5, 1e-3, log=True),
            Param("l1", 1e-6, 1e-3, log=True),
            Param("l2", 1e-6, 1e-3, log=True),
        ),
        trials=15,
    ),
    "classifier": Target(
        "classifier", (Param("head_width", 16, 128, log=False, kind=int),), trials=10, fixed=ENCODER_SHAPE
    ),
}
SEARCHED = {p.name: p for t in TARGETS.values() for p in t.space}  # every range flag, by Config field
TUNE_EPOCHS = 10  # per trial, unless --epochs
PRUNERS = ("median", "none")
HEARTBEAT_S = 60  # a RUNNING trial without a heartbeat for 2x this is marked failed


def parse_target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"fmnist tune: TARGET must be one of {', '.join(TARGETS)}, not {name!r}")
    return TARGETS[name]


def resolve_space(target_name: str, ranges: dict[str, tuple[float, float] | None]) -> tuple[Param, ...]:
    """The target's space with the range flags applied; a range flag of another target is an error."""
    target = parse_target(target_name)
    own = {p.name for p in target.space}
    for name, bounds in ranges.items():
        if bounds is not None and name not in own:
            other = next(t for t, spec in TARGETS.items() if name in {p.name for p in spec.space})
            raise ConfigError(f"{SEARCHED[name].flag} is for `fmnist tune {other}`, not `fmnist tune {target_name}`")
    return tuple(p.with_range(ranges.get(p.name)) for p in target.space)
