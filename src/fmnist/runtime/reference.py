"""The fixed reference network for sample quality: features of a CNN trained once, shipped as ONNX.

Fréchet distances are measured in its features rather than in a bundle's own classifier, so the
figures of two bundles compare (``scripts/train_reference.py`` trained it, seeded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REFERENCE_GRAPH = Path(__file__).with_name("reference.onnx")
FEATURES = 128  # width of the penultimate layer, the feature space
BATCH = 1000


def reference_features(images: np.ndarray, graph: Path = REFERENCE_GRAPH) -> np.ndarray:
    """float (N, 28, 28) in [0, 1] -> (N, FEATURES) float64 features of the reference network."""
    return reference_output(images, "features", graph)


def reference_classes(images: np.ndarray, graph: Path = REFERENCE_GRAPH) -> np.ndarray:
    """float (N, 28, 28) in [0, 1] -> (N,) the reference network's class for each image."""
    return reference_output(images, "logits", graph).argmax(1)


def reference_output(images: np.ndarray, output: str, graph: Path = REFERENCE_GRAPH) -> np.ndarray:
    """The reference network's output ``output`` ("features" or "logits") as float64."""
    import onnxruntime as ort

    from fmnist.errors import BundleError
    from fmnist.runtime.sessions import session_options

    if not graph.is_file():
        raise BundleError(f"{graph} not found: reinstall fmnist (the reference network ships with it)")
    session = ort.InferenceSession(str(graph), session_options(), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(images, dtype=np.float32).reshape(-1, 1, 28, 28)
    parts = [session.run([output], {"image": x[i : i + BATCH]})[0] for i in range(0, len(x), BATCH)]
    return np.concatenate(parts).astype(np.float64)
