"""slice.png is readable: the colour bar beside the panels, tick labels apart, log axes for log parameters."""

from __future__ import annotations

import itertools

import optuna
import pytest

from fmnist.training.search_space import TARGETS
from fmnist.training.study_plots import slice_figure


@pytest.fixture(scope="module")
def figure():
    import matplotlib.pyplot as plt

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    space = TARGETS["ae"].space
    study.optimize(lambda t: sum(float(p.suggest(t)) for p in space), n_trials=12)
    fig = slice_figure(study, "val_mse")
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def boxes(artists, renderer):
    return [a.get_window_extent(renderer) for a in artists if a.get_visible() and a.get_text()]


def test_the_colour_bar_covers_no_panel(figure):
    renderer = figure.canvas.get_renderer()
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 4 and len(bars) == 1
    bar = bars[0].get_tightbbox(renderer)
    for ax in panels:
        assert not ax.get_tightbbox(renderer).overlaps(bar), ax.get_xlabel()


def test_tick_labels_do_not_collide(figure):
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = boxes(axis.get_ticklabels(), renderer)
            for a, b in itertools.combinations(labels, 2):
                assert not a.overlaps(b), (ax.get_xlabel(), [t.get_text() for t in axis.get_ticklabels()])
        if ax.get_visible() and ax.get_label() != "<colorbar>":
            assert len(boxes(ax.xaxis.get_ticklabels(), renderer)) >= 2, ax.get_xlabel()  # a scale to read


def test_parameters_searched_on_a_log_scale_are_on_log_axes(figure):
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    scales = {ax.get_xlabel().split()[0]: ax.get_xscale() for ax in panels}
    assert scales == {"latent_dim": "linear", "lr": "log", "l1": "log", "l2": "log"}
