"""CONTRACT STUB (to be implemented for issue 6). Signatures are the agreed API.

The ``Model`` class wraps one verified bundle and its onnxruntime sessions. Every array is
numpy float32; images are [N,28,28] in [0,1] (light garment on black), latents [N,d].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLERS = ("kde", "kde-pca", "vae")
DEFAULT_SAMPLER = "kde"
MAX_GENERATE = 10_000


class Model:
    def __init__(self, folder: Path | str | None = None, provider: str = "auto") -> None:
        """Verify the bundle (fmnist.artifacts.load_manifest) and prepare sessions lazily.

        ``folder`` None means fmnist.artifacts.resolve_bundle_dir(None). ``provider`` is
        auto|cpu|cuda. Raises BundleError / InputError with one-line messages.
        """
        raise NotImplementedError

    manifest: dict
    latent_dim: int
    class_names: list[str]
    provider: str  # the onnxruntime provider actually used

    def encode(self, images: np.ndarray) -> np.ndarray:  # [N,28,28] -> [N,d]
        raise NotImplementedError

    def decode(self, latents: np.ndarray) -> np.ndarray:  # [N,d] -> [N,28,28]
        raise NotImplementedError

    def reconstruct(self, images: np.ndarray) -> np.ndarray:  # [N,28,28] -> [N,28,28]
        raise NotImplementedError

    def classify(self, images: np.ndarray) -> np.ndarray:  # [N,28,28] -> probabilities [N,10]
        raise NotImplementedError

    def generate(self, n: int, sampler: str = DEFAULT_SAMPLER, seed: int = 0) -> np.ndarray:
        """[n,28,28] new images; n in 1..MAX_GENERATE, sampler in SAMPLERS (InputError if not)."""
        raise NotImplementedError
