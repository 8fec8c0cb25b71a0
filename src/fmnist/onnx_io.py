"""The inputs and outputs of an ONNX graph, read from the file with the standard library alone.

The bundle loader checks a graph's tensor shapes against the manifest before any onnxruntime
session starts, and without the ``onnx`` package (not an inference dependency). An ONNX file is a
protobuf ``ModelProto``; only the fields on the path to the graph's inputs and outputs are
decoded, everything else (the weights) is skipped by its length. Field numbers are those of
``onnx/onnx.proto``.
"""

from __future__ import annotations

from typing import NamedTuple

# ModelProto.graph; GraphProto.input, .output; ValueInfoProto.name, .type; TypeProto.tensor_type;
# TypeProto.Tensor.elem_type, .shape; TensorShapeProto.dim; Dimension.dim_value, .dim_param
MODEL_GRAPH = 7
GRAPH_INPUT, GRAPH_OUTPUT = 11, 12
VALUE_NAME, VALUE_TYPE = 1, 2
TYPE_TENSOR = 1
TENSOR_ELEM_TYPE, TENSOR_SHAPE = 1, 2
SHAPE_DIM = 1
DIM_VALUE, DIM_PARAM = 1, 2
FLOAT = 1  # TensorProto.DataType.FLOAT


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


class Tensor(NamedTuple):  # not a dataclass, whose making costs the CLI's cold start (fmnist.contract.graphs)
    """A graph input or output: its name, element type and shape (an int per fixed dimension,
    the symbol's name for a symbolic one, None when the graph does not say)."""

    name: str
    elem_type: int | None
    shape: tuple[int | str | None, ...] | None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview):
    """(field number, wire type, value) of each field of one message; a length-delimited value
    is a view of its bytes, a varint its int, fixed-width values a view of their bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError("truncated field")
        yield number, wire, value


def _tensor(value_info: memoryview) -> Tensor:
    name, elem_type, shape = "", None, None
    for number, wire, value in _fields(value_info):
        if number == VALUE_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == VALUE_TYPE and wire == 2:
            for n, w, tensor in _fields(value):
                if n != TYPE_TENSOR or w != 2:
                    continue
                for n2, w2, v2 in _fields(tensor):
                    if n2 == TENSOR_ELEM_TYPE and w2 == 0:
                        elem_type = v2
                    elif n2 == TENSOR_SHAPE and w2 == 2:
                        shape = tuple(_dim(d) for n3, w3, d in _fields(v2) if n3 == SHAPE_DIM and w3 == 2)
    return Tensor(name, elem_type, shape)


def _dim(data: memoryview) -> int | str | None:
    for number, wire, value in _fields(data):
        if number == DIM_VALUE and wire == 0:
            return value
        if number == DIM_PARAM and wire == 2:
            return bytes(value).decode("utf-8", "replace")
    return None


def graph_io(data: bytes) -> tuple[list[Tensor], list[Tensor]]:
    """The (inputs, outputs) of the ONNX model in ``data``, in the graph's order.

    Raises:
        ProtobufError: the bytes are not a protobuf message, or hold no graph.
    """
    graph = None
    for number, wire, value in _fields(memoryview(data)):  # a view: the weights are skipped, not copied
        if number == MODEL_GRAPH and wire == 2:
            graph = value
    if graph is None:
        raise ProtobufError("no graph")
    inputs, outputs = [], []
    for number, wire, value in _fields(graph):
        if wire == 2 and number == GRAPH_INPUT:
            inputs.append(_tensor(value))
        elif wire == 2 and number == GRAPH_OUTPUT:
            outputs.append(_tensor(value))
    return inputs, outputs
