import numpy as np
import pytest

from fmnist import degenerate


def test_the_mean_image_is_the_baseline():
    rng = np.random.default_rng(0)
    images = rng.random((50, 28, 28))
    assert degenerate.mean_image_mse(np.full((5, 28, 28), 0.3)) == 0.0
    assert degenerate.mean_image_mse(images) == pytest.approx(np.var(images, axis=0).mean())


def test_a_model_near_chance_or_no_better_than_the_mean_image_gets_a_notice():
    """The quick run of the issue: 10% accuracy and an AE at 0.094 against a mean image at ~0.097."""
    found = degenerate.notices(accuracy=0.1, reconstruction_mse=0.094, baseline_mse=0.097)
    assert len(found) == 2
    assert "classifier is near chance: test accuracy 0.100" in found[0] and "train longer" in found[0]
    assert "AE is no better than the mean image: test MSE 0.0940" in found[1]


def test_usable_models_get_none():
    assert degenerate.notices(accuracy=0.84, reconstruction_mse=0.014, baseline_mse=0.097) == []
    assert degenerate.notices(accuracy=None, reconstruction_mse=None, baseline_mse=None) == []
