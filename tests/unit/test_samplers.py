"""The KDE bandwidth is searched on a grid that follows the latents' scale."""

import numpy as np
import pytest

from fmnist.export.samplers import BANDWIDTH_FACTORS, fit_kde, scott_bandwidth


def clusters(scale: float, seed: int = 0) -> np.ndarray:
    """300 points in four Gaussian clusters in 3-D, like a small latent."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 3)) * 4
    return scale * (centres[rng.integers(0, 4, 300)] + rng.normal(size=(300, 3)))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_chosen_bandwidth_scales_with_the_data_and_is_inside_the_grid(scale):
    kde, grid, notice = fit_kde(clusters(scale), seed=0)
    unit, _, _ = fit_kde(clusters(1.0), seed=0)
    assert kde.bandwidth_ == pytest.approx(unit.bandwidth_ * scale)  # the same point of a scaled grid
    assert grid == pytest.approx(scott_bandwidth(clusters(scale)) * BANDWIDTH_FACTORS)
    assert grid[0] < kde.bandwidth_ < grid[-1] and notice is None


def test_a_best_bandwidth_at_the_grid_edge_gets_a_notice():
    rng = np.random.default_rng(1)
    # a few exactly repeated points: the likelihood keeps rising as the bandwidth shrinks
    points = np.repeat(rng.normal(size=(5, 2)), 40, axis=0)
    kde, grid, notice = fit_kde(points, seed=0, name="kde")
    assert kde.bandwidth_ == pytest.approx(grid[0])
    assert notice.startswith("kde: the best KDE bandwidth") and "at the low end of the searched grid" in notice
    assert "Scott's rule" in notice and "\n" not in notice
