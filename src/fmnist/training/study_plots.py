"""The slice plot of a study, drawn here rather than by Optuna: one panel per parameter in a grid,
the colour bar beside the panels (Optuna's lies over the last one), a log axis for a parameter
searched on a log scale and few enough ticks that their labels never touch."""

from __future__ import annotations

import math

from optuna.distributions import FloatDistribution, IntDistribution
from optuna.study import Study
from optuna.trial import TrialState

MAX_COLUMNS = 3
PANEL_INCHES = (3.6, 3.0)  # width, height of one panel


def _log_ticks(low: float, high: float) -> list[float]:
    """1, 2 and 5 times the powers of ten within [low, high], thinned to at most five."""
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for m in (1, 2, 5)
        if low <= m * 10.0**e <= high
    ]
    step = max(1, math.ceil(len(ticks) / 5))
    return ticks[::step] or [low, high]


def slice_figure(study: Study, objective: str = "objective"):
    """Objective against each parameter's value for every complete trial, coloured by trial number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = sorted({n for t in trials for n in t.params})
    columns = max(1, min(MAX_COLUMNS, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    fig = plt.figure(figsize=(PANEL_INCHES[0] * columns + 1.2, PANEL_INCHES[1] * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    numbers = [t.number for t in trials]
    norm = matplotlib.colors.Normalize(min(numbers, default=0), max(max(numbers, default=0), 1))
    scatter = None
    for ax, name in zip(axes.flat, names, strict=False):
        shown = [t for t in trials if name in t.params]
        xs = [t.params[name] for t in shown]
        scatter = ax.scatter(
            xs, [t.value for t in shown], c=[t.number for t in shown], cmap="viridis", norm=norm, s=28,
            edgecolors="black", linewidths=0.4,
        )  # fmt: skip
        dist = shown[-1].distributions[name]
        low, high = (dist.low, dist.high) if isinstance(dist, FloatDistribution | IntDistribution) else (None, None)
        if isinstance(dist, FloatDistribution) and dist.log:
            ax.set_xscale("log")
            ax.set_xlim(low / 1.15, high * 1.15)
            ax.xaxis.set_major_locator(ticker.FixedLocator(_log_ticks(low, high)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.0e}".replace("e-0", "e-")))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        elif low is not None:
            pad = 0.05 * (high - low) or 0.5
            ax.set_xlim(low - pad, high + pad)
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5, integer=isinstance(dist, IntDistribution)))
        ax.set_xlabel(name + (" (log scale)" if ax.get_xscale() == "log" else ""))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(objective)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes.ravel().tolist(), label="trial number", location="right", shrink=0.9)
    fig.suptitle(f"Slice plot: {objective} of each complete trial ({len(trials)})")
    return fig
