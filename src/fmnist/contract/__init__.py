"""The bundle's contract and the set of models: each graph, each latent sampler (``graphs``,
``samplers``) and each model (``models``) declared once, read by export, the bundle checks,
``Bundle``, training, the server's schema and the CLI.
Standard library only, so the CLI's help and the server's schema cost no numpy import.
"""

from fmnist.contract.graphs import GRAPHS, Graph, Tensor, graph
from fmnist.contract.samplers import SAMPLERS, Array, Sampler, parse_class, sampler

__all__ = ["GRAPHS", "SAMPLERS", "Array", "Graph", "Sampler", "Tensor", "graph", "parse_class", "sampler"]
