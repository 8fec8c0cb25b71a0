"""One checked function per graph: export to ONNX, full checker, compare with PyTorch.

Which graphs there are, the model each comes from and their tensors' names are declared in
fmnist.contract.graphs; ``MODULES`` says which part of its trained model each graph is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist.contract.graphs import GRAPHS, IMAGE, Graph
from fmnist.errors import FmnistError

OPSET = 20
# Max difference between onnxruntime and PyTorch: absolute for outputs within [-1, 1] (images,
# probabilities), relative to the output's largest magnitude above that (latents, logits,
# features). float32 alone is ~1e-5 apart at |x| ~ 20: both runtimes were measured ~8e-6 away
# from a float64 reference on logits of 23, so no exporter meets a purely absolute 1e-5 there.
TOLERANCE = 1e-5


def scaled_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(1, max |want|)."""
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))


class ExportError(FmnistError):
    """An exported graph failed its check; nothing is written."""


class ClassifierGraph(nn.Module):
    """image -> (logits, softmax probabilities, hidden features of the head)."""

    def __init__(self, classifier):
        super().__init__()
        self.encoder, self.head = classifier.encoder, classifier.head

    def forward(self, image):
        features = self.head.hidden(self.encoder(image))
        logits = self.head.out(features)
        return logits, torch.softmax(logits, dim=1), features


class VAEEncoderGraph(nn.Module):
    """image -> (mean, log-variance) of q(z|x)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, image):
        return self.vae.encode(image)


MODULES = {  # graph name -> its nn.Module, from the trained model the declaration names as source
    "encoder": lambda ae: ae.encoder,
    "decoder": lambda ae: ae.decoder,
    "classifier": ClassifierGraph,
    "vae_encoder": VAEEncoderGraph,
    "vae_decoder": lambda vae: vae.decoder,
}


def graph_module(graph: Graph, models: dict[str, nn.Module]) -> nn.Module:
    """The module graph ``graph`` exports, from ``models`` (model name -> trained nn.Module)."""
    return MODULES[graph.name](models[graph.source])


def example_input(graph: Graph, models: dict[str, nn.Module], images: torch.Tensor) -> torch.Tensor:
    """What ``graph`` is checked on: ``images`` for an image input; for a latent input, the latents
    of ``images`` under the first output of the graph that encodes images for the same model."""
    if graph.inputs[0] == IMAGE:
        return images
    encoder = next(g for g in GRAPHS if g.source == graph.source and g.inputs[0] == IMAGE)
    with torch.inference_mode():
        out = graph_module(encoder, models)(images)
    return out[0] if isinstance(out, tuple) else out


def export_graph(
    module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_names: list[str]
) -> tuple[float, float]:
    """Export ``module`` with a dynamic batch axis, check it fully, and compare it with PyTorch on
    ``example``. Returns (max absolute, max scaled) difference; raises ExportError when the scaled
    one is above TOLERANCE."""
    import onnx
    import onnxruntime as ort

    module = module.eval()
    batch = torch.export.Dim("N", min=1, max=1_000_000)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=output_names,
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        dynamo=True,  # the supported exporter, chosen explicitly
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(output_names, {input_name: example.numpy()})
    with torch.inference_mode():
        want = module(example)
    want = want if isinstance(want, tuple) else (want,)
    pairs = list(zip(got, (w.numpy() for w in want), strict=True))
    absolute = max(float(np.abs(g - w).max()) for g, w in pairs)
    scaled = max(scaled_difference(g, w) for g, w in pairs)
    if not scaled <= TOLERANCE:
        raise ExportError(f"{path.name}: onnxruntime differs from PyTorch by {scaled:.2e} (> {TOLERANCE:.0e})")
    return absolute, scaled
