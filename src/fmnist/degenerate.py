"""Is a trained model worth using? The two failures a short run produces, as notices.

numpy only: ``export`` (training side) and ``evaluate`` (inference side) both ask.
"""

from __future__ import annotations

import numpy as np

N_CLASSES = 10
# below twice chance (0.2 for 10 classes) a classifier has learnt next to nothing; a head trained
# for too few steps answers one class for everything and sits at exactly chance
ACCURACY_FLOOR = 2.0 / N_CLASSES
# an AE whose error is above 80% of the mean image's has learnt little beyond the average garment
MSE_RATIO_CEILING = 0.8
ADVICE = "train longer (more --epochs, all the data: see the README's quick recipe)"


def mean_image_mse(images: np.ndarray) -> float:
    """The MSE of answering every image (N, 28, 28) in [0, 1] with their mean image: the baseline
    any autoencoder should beat."""
    images = np.asarray(images, dtype=np.float64)
    return float(((images - images.mean(axis=0)) ** 2).mean())


def notices(*, accuracy: float | None, reconstruction_mse: float | None, baseline_mse: float | None) -> list[str]:
    """One line per degenerate model; none for usable ones (or metrics not given)."""
    found = []
    if accuracy is not None and accuracy < ACCURACY_FLOOR:
        found.append(
            f"the classifier is near chance: test accuracy {accuracy:.3f}, chance {1 / N_CLASSES:.1f}; {ADVICE}"
        )
    if reconstruction_mse is not None and baseline_mse and reconstruction_mse > MSE_RATIO_CEILING * baseline_mse:
        found.append(
            f"the AE is no better than the mean image: test MSE {reconstruction_mse:.4f}, the mean test image's "
            f"{baseline_mse:.4f}; {ADVICE}"
        )
    return found
