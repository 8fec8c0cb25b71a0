"""The bundle's contract and the set of models: each graph and each latent sampler declared once (``graphs``,
``samplers``), and each model (``models``), read by export, the bundle checks, ``Bundle``, training, the server's schema and the CLI.
Standard library only, so the CLI's help and the server's schema cost no numpy import.
"""

from fmnist.contract.graphs import GRAPHS, Graph, Tensor, graph
from fmnist.contract.samplers import SAMPLERS, Array, Sampler, parse_class, sampler

__all__ = ["GRAPHS", "SAMPLERS", "Array", "Graph", "Sampler", "Tensor", "graph", "parse_class", "sampler"]
