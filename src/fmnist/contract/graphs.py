"""The bundle's graphs, each declared once: its file, the trained model it is exported from, and
its named inputs and outputs with their dtypes and shapes.

A shape is a tuple of dimensions: ``"N"`` the dynamic batch axis, ``"d"`` the bundle's
``latent_dim``, any other string a fixed size the graph chooses (the classifier's hidden width),
an int that size. Export names the graph's tensors from here, the loader compares every input and
output of the file with it (names, dtypes, shapes, and no tensor more or less), and the runtime
feeds and reads the tensors by these names. Standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

Dim = int | str
BATCH, LATENT = "N", "d"
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
# ONNX TensorProto.DataType of each dtype a declaration may name
ONNX_TYPES = {"float32": 1}


# NamedTuples, not frozen dataclasses: making a dataclass compiles its methods, 4 ms of the CLI's cold start
class Tensor(NamedTuple):
    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def shown(self, latent_dim: int) -> str:
        """``latent float32 [N, 8]``: the declaration with ``latent_dim`` filled in."""
        dims = ", ".join(str(latent_dim) if d == LATENT else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


class Graph(NamedTuple):
    name: str
    file: str
    source: str  # the trained model it is exported from ("ae", "classifier", "vae")
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    doc: str

    def entry(self) -> dict:
        """What the manifest's ``graphs`` says of it."""
        return {"file": self.file, "inputs": [t.name for t in self.inputs], "outputs": [t.name for t in self.outputs]}


IMAGE = Tensor("image", (BATCH, *IMAGE_SHAPE))  # in [0, 1], light garment on black
LATENT_IN = Tensor("latent", (BATCH, LATENT))

GRAPHS: tuple[Graph, ...] = (
    Graph("encoder", "encoder.onnx", "ae", (IMAGE,), (LATENT_IN,), "the AE's encoder"),
    Graph("decoder", "decoder.onnx", "ae", (LATENT_IN,), (IMAGE,), "the AE's decoder (sigmoid inside)"),
    Graph(
        "classifier",
        "classifier.onnx",
        "classifier",
        (IMAGE,),
        (
            Tensor("logits", (BATCH, NUM_CLASSES)),
            Tensor("probabilities", (BATCH, NUM_CLASSES)),  # softmax of logits
            Tensor("features", (BATCH, "h")),  # the head's hidden activations
        ),
        "the classifier",
    ),
    Graph(
        "vae_encoder",
        "vae_encoder.onnx",
        "vae",
        (IMAGE,),
        (Tensor("mean", (BATCH, LATENT)), Tensor("logvar", (BATCH, LATENT))),
        "q(z|x) of the VAE",
    ),
    Graph("vae_decoder", "vae_decoder.onnx", "vae", (LATENT_IN,), (IMAGE,), "the VAE's decoder"),
)
BY_NAME = {g.name: g for g in GRAPHS}


def graph(name: str) -> Graph:
    return BY_NAME[name]


def mismatch(graph: Graph, kind: str, got: list, latent_dim: int) -> str | None:
    """Why the file's ``got`` inputs or outputs (onnx_io.Tensor) break ``graph``'s declaration, or
    None when every one has the declared name, dtype and shape, in order, none more or less."""
    want = graph.inputs if kind == "inputs" else graph.outputs
    sizes: dict[str, int] = {LATENT: latent_dim}
    if len(got) == len(want) and all(_matches(w, t, sizes) for w, t in zip(want, got, strict=True)):
        return None
    shown = ", ".join(_shown(t) for t in got) or "none"
    declared = ", ".join(w.shown(latent_dim) for w in want)
    return f"{kind} {shown}; the contract (latent_dim {latent_dim}) says {declared}"


def _matches(want: Tensor, got, sizes: dict[str, int]) -> bool:
    if got.name != want.name or got.elem_type != ONNX_TYPES[want.dtype] or got.shape is None:
        return False
    return dims_match(want.shape, got.shape, sizes)


def _dim(want: Dim, got, sizes: dict[str, int]) -> bool:
    """``got`` (a size, or a symbol's name in a graph) fits ``want``; a symbol of the declaration
    takes the first size it meets and must keep it (``sizes`` holds them)."""
    if want == BATCH:
        return True  # any batch size, fixed or symbolic
    if not isinstance(got, int) or isinstance(got, bool) or got < 1:
        return False
    if isinstance(want, str):
        return sizes.setdefault(want, got) == got
    return got == want


def dims_match(want: tuple[Dim, ...], got: tuple, sizes: dict[str, int]) -> bool:
    """Every dimension of ``got`` fits ``want`` (see _dim), binding the declaration's symbols in ``sizes``."""
    return len(got) == len(want) and all(_dim(w, g, sizes) for w, g in zip(want, got, strict=True))


def _shown(tensor) -> str:
    dims = "?" if tensor.shape is None else ", ".join("?" if d is None else str(d) for d in tensor.shape)
    kinds = {v: k for k, v in ONNX_TYPES.items()}
    return f"{tensor.name} {kinds.get(tensor.elem_type, f'type {tensor.elem_type}')} [{dims}]"
