"""A tiny artifact bundle built with ``onnx.helper`` and fixed weights: no torch, no training.

It honours the bundle contract (fmnist.artifacts) exactly, with latent size d = 2 and a
classifier head of width h = 3, and every graph is a closed form, so tests can assert exact answers.
With ``x`` the flattened image (N, 784), ``mean`` the mean pixel and ``tilt`` the mean of the top
14 rows minus the mean of the bottom 14:

* encoder, vae_encoder mean:  z = x @ ENCODER = (mean, tilt)
* vae_encoder logvar:         LOGVAR, the same for every image
* decoder:                   every pixel sigmoid(z0 + s * z1), s = +1 in the top half, -1 below
* vae_decoder:               the same with 2 * z, so tests can tell which decoder ran
* classifier:                 features = relu(mean, tilt, -tilt), logits = features @ HEAD,
                              so a black image is uniform (label 0, p 0.1), a white one class 9,
                              a top-heavy one class 0 and a bottom-heavy one class 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES, artifacts

D, H, PIXELS = 2, 3, 28 * 28
OPSET = 17

TOP = np.repeat([1.0, -1.0], PIXELS // 2).astype(np.float32)  # +1 for rows 0-13, -1 for 14-27
ENCODER = np.stack([np.full(PIXELS, 1 / PIXELS), TOP / (PIXELS / 2)], 1).astype(np.float32)  # (784, 2)
DECODER = np.stack([np.ones(PIXELS), TOP]).astype(np.float32)  # (2, 784)
VAE_DECODER = 2 * DECODER
FEATURES = np.concatenate([ENCODER, -ENCODER[:, 1:]], 1)  # (784, 3)
HEAD = np.zeros((H, 10), np.float32)
HEAD[0, 9] = HEAD[1, 0] = HEAD[2, 1] = 8.0
LOGVAR = np.array([-1.0, -2.0], np.float32)
LOG_SCALE = -1.5

# What samplers.npz holds (float64, as the contract says); any arrays of these shapes will do.
SAMPLERS = {
    "pca_mean": np.array([0.25, 0.0]),
    "pca_components": np.array([[0.6, 0.8], [-0.8, 0.6]]),  # (c, d): a rotation
    "kde_pca_points": np.array([[-1.0, 0.0], [0.0, 0.5], [1.0, -0.5], [0.5, 0.5]]),
    "kde_pca_bandwidth": np.float64(0.1),
    "kde_latent_points": np.array([[0.2, 0.1], [0.5, -0.1], [0.1, 0.0], [0.3, 0.2]]),
    "kde_latent_bandwidth": np.float64(0.05),
    # class k: two points at (k / 10, +-0.5), so a class's draws tell which class they came from
    "kde_class_points": np.array([[[k / 10, 0.5], [k / 10, -0.5]] for k in range(10)]),
    "kde_class_bandwidth": np.full(10, 0.01),
}
CLASS_ARRAYS = ("kde_class_points", "kde_class_bandwidth")  # what format 1 lacks


def toy_encode(images: np.ndarray) -> np.ndarray:
    """What encoder.onnx computes: (N, 28, 28) -> (N, 2)."""
    return images.reshape(len(images), PIXELS).astype(np.float32) @ ENCODER


def toy_decode(latents: np.ndarray, graph: str = "decoder") -> np.ndarray:
    """What decoder.onnx (or vae_decoder.onnx) computes: (N, 2) -> (N, 28, 28)."""
    weights = VAE_DECODER if graph == "vae_decoder" else DECODER
    return (1 / (1 + np.exp(-(latents.astype(np.float32) @ weights)))).reshape(-1, 28, 28)


def toy_probabilities(images: np.ndarray) -> np.ndarray:
    """What classifier.onnx's ``probabilities`` output computes: (N, 28, 28) -> (N, 10)."""
    logits = np.maximum(images.reshape(len(images), PIXELS) @ FEATURES, 0) @ HEAD
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray]):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        nodes,
        "toy",
        [info(n, s) for n, s in inputs],
        [info(n, s) for n, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model, full_check=True)
    return model


def _graphs() -> dict[str, object]:
    from onnx import helper

    image, latent = ["N", 1, 28, 28], ["N", D]
    flatten = helper.make_node("Flatten", ["image"], ["x"], axis=1)  # (N, 784)
    shape = np.array([-1, 1, 28, 28], np.int64)

    def decoder(weights):
        return _model(
            [
                helper.make_node("MatMul", ["latent", "W"], ["a"]),
                helper.make_node("Sigmoid", ["a"], ["s"]),
                helper.make_node("Reshape", ["s", "shape"], ["image"]),  # (N, 1, 28, 28)
            ],
            [("latent", latent)],
            [("image", image)],
            {"W": weights, "shape": shape},
        )

    return {
        "encoder": _model(
            [flatten, helper.make_node("MatMul", ["x", "W"], ["latent"])],
            [("image", image)],
            [("latent", latent)],
            {"W": ENCODER},
        ),
        "decoder": decoder(DECODER),
        "classifier": _model(
            [
                flatten,
                helper.make_node("MatMul", ["x", "F"], ["f"]),
                helper.make_node("Relu", ["f"], ["features"]),
                helper.make_node("MatMul", ["features", "W"], ["logits"]),
                helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
            ],
            [("image", image)],
            [("logits", ["N", 10]), ("probabilities", ["N", 10]), ("features", ["N", H])],
            {"F": FEATURES, "W": HEAD},
        ),
        "vae_encoder": _model(
            [
                flatten,
                helper.make_node("MatMul", ["x", "W"], ["mean"]),
                helper.make_node("MatMul", ["x", "zero"], ["z"]),  # (N, 2) of zeros
                helper.make_node("Add", ["z", "logvar0"], ["logvar"]),
            ],
            [("image", image)],
            [("mean", latent), ("logvar", latent)],
            {"W": ENCODER, "zero": np.zeros((PIXELS, D), np.float32), "logvar0": LOGVAR},
        ),
        "vae_decoder": decoder(VAE_DECODER),
    }


def build_toy_bundle(
    folder: Path, samplers: dict[str, np.ndarray] | None = None, format_version: int = artifacts.FORMAT_VERSION
) -> Path:
    """Write the toy bundle into ``folder`` (created) and return it.

    ``samplers`` replaces the arrays of samplers.npz (e.g. ones fitted with scikit-learn);
    ``format_version`` 1 leaves out the per-class arrays, as bundles before them did.
    """
    import onnx

    from fmnist.config import Config
    from fmnist.contract import GRAPHS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in _graphs().items():
        onnx.save(model, folder / artifacts.GRAPHS[name])
    arrays = {k: np.asarray(v, np.float64) for k, v in (samplers or SAMPLERS).items()}
    if format_version < 2:
        arrays = {k: v for k, v in arrays.items() if k not in CLASS_ARRAYS}
    np.savez(folder / artifacts.SAMPLERS_NPZ, **arrays)
    artifacts.write_manifest(
        folder,
        {
            "package_version": "0.0.0-toy",
            "created": "2026-01-01T00:00:00+0000",
            "libraries": {"onnx": onnx.__version__, "numpy": np.__version__},
            "config": Config(latent_dim=D, head_width=H).to_dict(),
            "latent_dim": D,
            "class_names": list(CLASS_NAMES),
            "input_contract": artifacts.INPUT_CONTRACT,
            "graphs": {g.name: g.entry() for g in GRAPHS},
            "vae": {"log_scale": LOG_SCALE},
            "samplers": {
                "pca_components": int(arrays["pca_components"].shape[0]),
                "kde_points": int(arrays["kde_latent_points"].shape[0]),
                "kde_pca_bandwidth": float(arrays["kde_pca_bandwidth"]),
                "kde_latent_bandwidth": float(arrays["kde_latent_bandwidth"]),
            },
            "metrics": {"reconstruction_mse": 0.1, "classifier_accuracy": 0.1, "vae_elbo": -100.0},
            "provenance": {"run_dir": None, "command": "tests/toybundle.py", "git_commit": None},
        },
        format_version,
    )
    return folder


def retamper(folder: Path, edit=None) -> dict:
    """Apply ``edit`` to the manifest of the bundle in ``folder`` after re-hashing every file it
    lists, so that a tampered file or field passes the hash check and the schema is what refuses
    it. Returns the manifest written."""
    import json

    path = Path(folder) / artifacts.MANIFEST
    manifest = json.loads(path.read_text())
    for name in manifest["files"]:
        file = Path(folder) / name
        manifest["files"][name] = {"size": file.stat().st_size, "sha256": artifacts.sha256_file(file)}
    if edit is not None:
        edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    return manifest
