"""Exact per-prediction explanations (SHAP values) computed from the served ONNX artifact itself.

What is explained is what is served: the graph is read once at load (parsed with the protobuf runtime that
onnxruntime already needs; the `onnx` package is not in the scoring layer), its preprocessing is evaluated in numpy
and every contribution is attributed back to the family's original features.

- Tree ensembles (ONNX-ML TreeEnsembleClassifier / TreeEnsembleRegressor, float `nodes_values` or double
  `*_as_tensor` attributes): exact path-dependent TreeSHAP (Lundberg et al., "From local explanations to global
  understanding with explainable AI for trees", Nature Machine Intelligence 2020, Algorithm 2) on the raw output:
  the probability of the positive class for a random forest, the log-odds margin (base value included) for gradient
  boosting. Node covers are the training rows that reach each node (`tree_covers`), stored in the artifact's
  `mlops.explainer` metadata entry at training time (`with_background`).
- Linear models (LinearClassifier behind Scaler / OneHotEncoder / Imputer / Normalizer / Where(IsNaN) steps):
  exact linear SHAP against the training baseline, contribution_j = w_j (z_j - E[z_j]) on the log-odds, where z is
  the classifier's input and E[z] its mean over the training rows (Lundberg & Lee 2017, linear model with
  independent features; shap's LinearExplainer).
- Attribution: every column the model reads is traced back through the graph to the one input column ("X", schema
  order) it comes from; one-hot columns of a categorical sum to that feature, an imputed value's contribution goes
  to the feature that was missing, a ColumnTransformer's column order is undone. A normalised column (Normalizer)
  is attributed to the column it was computed from.

How TreeSHAP is evaluated (a vectorised form of Algorithm 2, exact up to float64 rounding): for each root-to-leaf
path p with leaf value v and unique features j (repeated splits on a feature merged: zero fraction z_j = product of
the cover ratios, one fraction o_j in {0, 1} = x follows every split on j), feature u receives
v (o_u - z_u) integral_0^1 prod_{j != u} (z_j + (o_j - z_j) t) dt, the closed form of the permutation weights in
Algorithm 2 (the same identity as in Linear TreeShap, Yu et al., NeurIPS 2022). The integrand has degree < D (the
most unique features on any path), so Gauss-Legendre quadrature with ceil(D / 2) points is exact. Paths share
prefixes, so the products are built top-down over all trees at once (one numpy step per tree level), the leaf sums
of each subtree come from one cumulative sum over the leaves in depth-first order, and each edge turns them into
its feature's share; a repeated feature is corrected at its deeper split (what Algorithm 2's UNWIND does).
Per row: O(nodes x ceil(D / 2)) numpy work in blocks of trees that stay in cache, no Python loop over nodes or
paths. Verified against shap's TreeExplainer / LinearExplainer and brute-force Shapley values in
tests/unit/test_explain_reference.py; figures in bench/explain_bench.py.

Training stores the background with `with_background(onnx_bytes, X_train)` (before the artifact is hashed);
scoring builds `Explainer.from_onnx(onnx_bytes)` once per sandbox and calls `explain(X, top)`.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import orjson

from mlops.core.errors import ConfigurationError, ValidationError

METADATA_KEY = "mlops.explainer"
BACKGROUND_FORMAT = 1
ROUTING_CHUNK = 2_000_000  # row x tree cells per step when routing training rows (tree_covers)
BLOCK_NODES = 16_384  # tree nodes per TreeSHAP block (at most, or one tree): per-row arrays stay in cache
BATCH_ROWS = 4  # rows per TreeSHAP step

# ---- the ONNX protobuf subset ---------------------------------------------------------------------------------
# Field numbers from onnx/onnx.proto (onnx 1.x, proto2). Only what explanations read; protobuf skips the other
# fields while parsing and keeps them when re-serialising. tests/unit/test_explain_reference.py checks this
# reading against the `onnx` package on real artifacts.
_PACKAGE = "mlops_onnx_subset"
_ONNX_SUBSET: dict[str, tuple[tuple[str, int, str], ...]] = {
    "OperatorSetIdProto": (("domain", 1, "string"), ("version", 2, "int64")),
    "StringStringEntryProto": (("key", 1, "string"), ("value", 2, "string")),
    "TensorProto": (("dims", 1, "int64*"), ("data_type", 2, "int32"), ("float_data", 4, "float*"),
                    ("int32_data", 5, "int32*"), ("int64_data", 7, "int64*"), ("name", 8, "string"),
                    ("raw_data", 9, "bytes"), ("double_data", 10, "double*"), ("uint64_data", 11, "uint64*"),
                    ("data_location", 14, "int32")),
    "AttributeProto": (("name", 1, "string"), ("f", 2, "float"), ("i", 3, "int64"), ("s", 4, "bytes"),
                       ("t", 5, "TensorProto"), ("floats", 7, "float*"), ("ints", 8, "int64*"),
                       ("strings", 9, "bytes*"), ("type", 20, "int32")),
    "NodeProto": (("input", 1, "string*"), ("output", 2, "string*"), ("name", 3, "string"),
                  ("op_type", 4, "string"), ("attribute", 5, "AttributeProto*"), ("domain", 7, "string")),
    "Dimension": (("dim_value", 1, "int64"), ("dim_param", 2, "string")),
    "TensorShapeProto": (("dim", 1, "Dimension*"),),
    "TensorTypeProto": (("elem_type", 1, "int32"), ("shape", 2, "TensorShapeProto")),
    "TypeProto": (("tensor_type", 1, "TensorTypeProto"),),
    "ValueInfoProto": (("name", 1, "string"), ("type", 2, "TypeProto")),
    "GraphProto": (("node", 1, "NodeProto*"), ("name", 2, "string"), ("initializer", 5, "TensorProto*"),
                   ("input", 11, "ValueInfoProto*"), ("output", 12, "ValueInfoProto*")),
    "ModelProto": (("ir_version", 1, "int64"), ("producer_name", 2, "string"), ("graph", 7, "GraphProto"),
                   ("opset_import", 8, "OperatorSetIdProto*"), ("metadata_props", 14, "StringStringEntryProto*")),
}
# TensorProto.DataType -> numpy
_TENSOR_DTYPES: dict[int, Any] = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
                                  7: np.int64, 9: np.bool_, 11: np.float64, 12: np.uint32, 13: np.uint64}
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 1, 2, 3, 4, 6, 7, 8


@cache
def _onnx_messages() -> dict[str, Any]:
    """Message classes for the subset, built in a private descriptor pool (no clash with `onnx` if imported)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    scalars = {"string": field.TYPE_STRING, "bytes": field.TYPE_BYTES, "int64": field.TYPE_INT64,
               "int32": field.TYPE_INT32, "uint64": field.TYPE_UINT64, "float": field.TYPE_FLOAT,
               "double": field.TYPE_DOUBLE}
    spec = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2")
    for message_name, fields in _ONNX_SUBSET.items():
        message = spec.message_type.add(name=message_name)
        for name, number, kind in fields:
            entry = message.field.add(name=name, number=number, label=field.LABEL_REPEATED if kind.endswith("*")
                                      else field.LABEL_OPTIONAL)
            kind = kind.rstrip("*")
            if kind in scalars:
                entry.type = scalars[kind]
            else:
                entry.type, entry.type_name = field.TYPE_MESSAGE, f".{_PACKAGE}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(spec)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in _ONNX_SUBSET}


def read_model(onnx_bytes: bytes) -> Any:
    """The ModelProto of an ONNX artifact, parsed with the protobuf subset above (graph, opsets, metadata).

    Raises ConfigurationError when the bytes are not a parseable ONNX model with a graph."""
    model = _onnx_messages()["ModelProto"]()
    try:
        model.ParseFromString(bytes(onnx_bytes))
    except Exception as exc:  # protobuf's DecodeError and the upb variants
        raise ConfigurationError(f"the model artifact is not a readable ONNX model: {exc}") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ConfigurationError("the model artifact holds no ONNX graph")
    return model


def _tensor_array(tensor: Any) -> np.ndarray:
    if tensor.data_location == 1:
        raise ConfigurationError(f"tensor {tensor.name!r} keeps its data outside the model; explanations need "
                                 "self-contained artifacts")
    dtype = _TENSOR_DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ConfigurationError(f"tensor {tensor.name!r} has data type {tensor.data_type}, which explanations "
                                 "do not read")
    if tensor.raw_data:
        array = np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    elif tensor.data_type == 1:
        array = np.asarray(tensor.float_data, dtype=np.float32)
    elif tensor.data_type == 11:
        array = np.asarray(tensor.double_data, dtype=np.float64)
    elif tensor.data_type == 7:
        array = np.asarray(tensor.int64_data, dtype=np.int64)
    elif tensor.data_type in (12, 13):
        array = np.asarray(tensor.uint64_data, dtype=dtype)
    else:
        array = np.asarray(tensor.int32_data).astype(dtype)
    return array.reshape(tuple(tensor.dims))


def _attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values: floats, ints, bytes, numpy arrays (tensors) or lists of those."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        kind = attr.type
        if kind == _ATTR_FLOAT:
            out[attr.name] = float(attr.f)
        elif kind == _ATTR_INT:
            out[attr.name] = int(attr.i)
        elif kind == _ATTR_STRING:
            out[attr.name] = bytes(attr.s)
        elif kind == _ATTR_TENSOR:
            out[attr.name] = _tensor_array(attr.t)
        elif kind == _ATTR_FLOATS:
            out[attr.name] = np.asarray(attr.floats, dtype=np.float32)
        elif kind == _ATTR_INTS:
            out[attr.name] = np.asarray(attr.ints, dtype=np.int64)
        elif kind == _ATTR_STRINGS:
            out[attr.name] = [bytes(s) for s in attr.strings]
        else:
            out[attr.name] = None  # graphs, sparse tensors, type protos: no supported operator reads them
    return out


def _metadata(model: Any) -> dict[str, str]:
    return {entry.key: entry.value for entry in model.metadata_props}


# ---- graph preprocessing: numpy evaluation with provenance -----------------------------------------------------
# Every batched tensor carries `source`: for each of its non-batch positions, the index of the input column it is
# computed from (-1: a constant). Values are float64 holding exactly what the graph holds (the input is cast to
# the graph's declared dtype first), so thresholds compare exactly as in onnxruntime.

_MODEL_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "LinearClassifier", "LinearRegressor"})
_CAST_DTYPES = {1: np.float32, 11: np.float64, 7: np.int64, 6: np.int32, 9: np.bool_}


@dataclass
class _Tensor:
    value: np.ndarray
    source: np.ndarray | None  # None: a constant (no batch dimension)


def _merge_sources(node: Any, out_shape: tuple[int, ...], inputs: Sequence[_Tensor]) -> np.ndarray:
    """Element-wise operators: each output position keeps the one input column it depends on."""
    merged = np.full(out_shape, -1, dtype=np.int64)
    for tensor in inputs:
        if tensor.source is None:
            continue
        source = np.broadcast_to(tensor.source, out_shape)
        clash = (merged >= 0) & (source >= 0) & (merged != source)
        if clash.any():
            raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) combines several input features in "
                                     "one value; explanations cannot attribute it to one feature")
        merged = np.where(source >= 0, source, merged)
    return merged


def _axis(node: Any, attrs: dict[str, Any], ndim: int, default: int = 0) -> int:
    axis = int(attrs.get("axis", default))
    axis = axis + ndim if axis < 0 else axis
    if axis == 0:
        raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) works across rows; explanations need "
                                 "row-wise preprocessing")
    return axis


def _compile_node(node: Any, attrs: dict[str, Any], inputs: list[_Tensor]
                  ) -> tuple[Callable[..., np.ndarray], _Tensor]:
    """A preprocessing node as (value function over input values, output tensor on the probe rows)."""
    op = node.op_type
    values = [t.value for t in inputs]
    fn: Callable[..., np.ndarray]
    source: np.ndarray | None = None
    if op in ("Identity", "IsNaN", "Where", "Add", "Sub", "Mul", "Div", "Scaler", "Imputer", "Normalizer", "Cast",
              "Abs", "Neg"):
        if op == "Identity":
            fn = lambda x: x  # noqa: E731
        elif op == "IsNaN":
            fn = np.isnan
        elif op == "Where":
            fn = np.where
        elif op in ("Add", "Sub", "Mul", "Div", "Abs", "Neg"):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Abs": np.abs,
                  "Neg": np.negative}[op]
        elif op == "Scaler":
            offset = np.asarray(attrs.get("offset", [0.0]), dtype=np.float64)
            scale = np.asarray(attrs.get("scale", [1.0]), dtype=np.float64)
            fn = lambda x: (x - offset) * scale  # noqa: E731
        elif op == "Imputer":
            fill = np.asarray(attrs["imputed_value_floats"] if "imputed_value_floats" in attrs
                              else attrs.get("imputed_value_int64s", [0]), dtype=np.float64)
            replaced = float(attrs.get("replaced_value_float", attrs.get("replaced_value_int64", 0.0)))
            if math.isnan(replaced):
                fn = lambda x: np.where(np.isnan(x), fill, x)  # noqa: E731
            else:
                fn = lambda x: np.where(x == replaced, fill, x)  # noqa: E731
        elif op == "Normalizer":
            norm = attrs.get("norm", b"MAX").decode()
            fn = _normalizer(norm)
        else:
            dtype = _CAST_DTYPES.get(int(attrs.get("to", 0)))
            if dtype is None:
                raise ConfigurationError(f"Cast ({node.name!r}) to type {attrs.get('to')} is not supported")
            if dtype in (np.float32, np.float64):
                fn = lambda x: np.asarray(x, dtype=np.float64).astype(dtype).astype(np.float64)  # noqa: E731
            elif dtype is np.bool_:
                fn = lambda x: np.asarray(x) != 0  # noqa: E731
            else:
                fn = lambda x: np.trunc(x).astype(dtype) if np.asarray(x).dtype.kind == "f" else x.astype(dtype)  # noqa: E731
        value = fn(*values)
        if all(t.source is None for t in inputs):
            return fn, _Tensor(np.asarray(value), None)
        source = _merge_sources(node, value.shape[1:], inputs)
    elif op == "ArrayFeatureExtractor":
        columns = _constant(node, inputs[1]).astype(np.int64).ravel()
        fn = lambda x, _: np.take(x, columns, axis=-1)  # noqa: E731
        value = fn(*values)
        source = np.take(_batched(node, inputs[0]).source, columns, axis=-1)
    elif op == "Gather":
        data = _batched(node, inputs[0])
        axis = _axis(node, attrs, data.value.ndim)
        index = _constant(node, inputs[1]).astype(np.int64)
        fn = lambda x, _: np.take(x, index, axis=axis)  # noqa: E731
        value = fn(*values)
        source = np.take(data.source, index, axis=axis - 1)
    elif op == "Concat":
        axis = _axis(node, attrs, inputs[0].value.ndim)
        batched = [_batched(node, t) for t in inputs]
        fn = lambda *xs: np.concatenate(xs, axis=axis)  # noqa: E731
        value = fn(*values)
        source = np.concatenate([t.source for t in batched], axis=axis - 1)
    elif op in ("Reshape", "Flatten"):
        data = _batched(node, inputs[0])
        if op == "Reshape":
            shape = tuple(int(s) for s in _constant(node, inputs[1]).ravel())
            fn = lambda x, _: x.reshape(tuple(x.shape[i] if s == 0 else s for i, s in enumerate(shape)))  # noqa: E731
        else:
            if int(attrs.get("axis", 1)) != 1:
                raise ConfigurationError(f"Flatten ({node.name!r}) must keep the row axis (axis 1)")
            fn = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
        value = fn(*values)
        if value.shape[0] != data.value.shape[0]:
            raise ConfigurationError(f"{op} ({node.name!r}) mixes rows; explanations need row-wise preprocessing")
        source = data.source.reshape(value.shape[1:])
    elif op == "OneHotEncoder":
        if "cats_int64s" not in attrs:
            raise ConfigurationError(f"OneHotEncoder ({node.name!r}) with string categories is not supported")
        categories = np.asarray(attrs["cats_int64s"], dtype=np.int64)
        fn = lambda x: (np.asarray(x)[..., None] == categories).astype(np.float64)  # noqa: E731
        value = fn(*values)
        data = _batched(node, inputs[0])
        source = np.repeat(data.source[..., None], categories.size, axis=-1)
    else:
        raise ConfigurationError(f"operator {op!r} ({node.name!r}) in the model's preprocessing is not supported "
                                 "by explanations")
    return fn, _Tensor(np.asarray(value), source)


def _normalizer(norm: str) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX-ML Normalizer, row-wise: MAX divides by the row's maximum, L1 by the sum of absolute values, L2 by the
    Euclidean norm (onnxruntime's normalizer.cc)."""
    if norm == "MAX":
        return lambda x: x / np.max(x, axis=-1, keepdims=True)
    if norm == "L1":
        return lambda x: x / np.sum(np.abs(x), axis=-1, keepdims=True)
    if norm == "L2":
        return lambda x: x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    raise ConfigurationError(f"Normalizer norm {norm!r} is not supported")


def _constant(node: Any, tensor: _Tensor) -> np.ndarray:
    if tensor.source is not None:
        raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) takes a computed index or shape; "
                                 "explanations need constants there")
    return tensor.value


def _batched(node: Any, tensor: _Tensor) -> _Tensor:
    if tensor.source is None:
        raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) reads a constant where explanations "
                                 "expect the input rows")
    return tensor


@dataclass(frozen=True)
class _Graph:
    """The served graph, ready to evaluate up to the model operator's input."""

    model_node: Any
    model_attrs: dict[str, Any]
    input_name: str
    input_dtype: Any  # numpy dtype of input "X"
    n_inputs: int  # columns of X
    steps: tuple[tuple[Callable[..., np.ndarray], tuple[str, ...], str], ...]
    constants: dict[str, np.ndarray]
    model_input: str
    column_source: np.ndarray  # [model input columns] -> X column (-1: constant)
    metadata: dict[str, str]
    consumers: dict[str, list[Any]]  # tensor -> the nodes reading it, downstream of the model operator

    def model_inputs(self, X: np.ndarray) -> np.ndarray:
        """X [rows, n_inputs] (any float dtype) -> the model operator's input [rows, columns], float64."""
        env = dict(self.constants)
        env[self.input_name] = np.asarray(X).astype(self.input_dtype).astype(np.float64)
        for fn, names, out in self.steps:
            env[out] = fn(*[env[n] for n in names])
        value = env[self.model_input]
        return np.asarray(value, dtype=np.float64).reshape(value.shape[0], -1)


def _downstream(node: Any, graph: Any) -> list[str]:
    """The tensors computed from the node's outputs (what reads the model's scores)."""
    names, frontier = set(node.output), list(node.output)
    while frontier:
        name = frontier.pop()
        for other in graph.node:
            if name in other.input:
                for out in other.output:
                    if out not in names:
                        names.add(out)
                        frontier.append(out)
    return sorted(names)


def _read_graph(model: Any) -> _Graph:
    graph = model.graph
    initializers = {t.name: _tensor_array(t) for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ConfigurationError(f"explanations need a graph with one input tensor, found {len(inputs)}")
    entry = inputs[0]
    elem = entry.type.tensor_type.elem_type
    if elem not in (1, 11):
        raise ConfigurationError(f"input {entry.name!r} has element type {elem}; explanations read float or double")
    dims = entry.type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value <= 0:
        raise ConfigurationError(f"input {entry.name!r} must be [rows, features] with a fixed feature count")
    n_inputs = int(dims[1].dim_value)
    model_nodes = [n for n in graph.node if n.op_type in _MODEL_OPS]
    if not model_nodes:  # a linear model written as MatMul + Add + Sigmoid/Softmax (skl2onnx, float64 inputs)
        model_nodes = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in initializers]
    if len(model_nodes) != 1:
        ops = sorted({n.op_type for n in graph.node})
        raise ConfigurationError(f"explanations need exactly one tree ensemble or linear model operator; the graph "
                                 f"has {len(model_nodes)} (operators: {', '.join(ops)})")
    model_node = model_nodes[0]
    producers = {out: n for n in graph.node for out in n.output}
    order = {id(n): i for i, n in enumerate(graph.node)}
    needed: dict[int, Any] = {}
    seen: set[str] = set()
    pending = [model_node.input[0]]
    while pending:
        name = pending.pop()
        if name in seen or name not in producers:
            continue
        seen.add(name)
        node = producers[name]
        needed[order[id(node)]] = node
        pending.extend(node.input)
    probe_rows = 2
    tensors: dict[str, _Tensor] = {name: _Tensor(value, None) for name, value in initializers.items()}
    tensors[entry.name] = _Tensor(np.ones((probe_rows, n_inputs)), np.arange(n_inputs))
    steps = []
    for _, node in sorted(needed.items()):
        if len(node.output) != 1:
            raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) with several outputs is not supported")
        missing = [name for name in node.input if name and name not in tensors]
        if missing:
            raise ConfigurationError(f"operator {node.op_type} ({node.name!r}) reads unknown tensors {missing}")
        with np.errstate(all="ignore"):  # the probe rows only fix shapes and provenance
            fn, out = _compile_node(node, _attributes(node), [tensors[name] for name in node.input if name])
        tensors[node.output[0]] = out
        steps.append((fn, tuple(name for name in node.input if name), node.output[0]))
    model_input = tensors.get(model_node.input[0])
    if model_input is None or model_input.source is None or model_input.value.shape[0] != probe_rows:
        raise ConfigurationError(f"the {model_node.op_type} operator does not read the input rows")
    return _Graph(model_node=model_node, model_attrs=_attributes(model_node), input_name=entry.name,
                  input_dtype=np.float32 if elem == 1 else np.float64, n_inputs=n_inputs, steps=tuple(steps),
                  constants={name: value for name, value in initializers.items()},
                  model_input=model_node.input[0], column_source=model_input.source.reshape(-1).astype(np.int64),
                  metadata=_metadata(model),
                  consumers={name: [n for n in graph.node if name in n.input]
                             for name in _downstream(model_node, graph)})


# ---- tree ensembles ----------------------------------------------------------------------------------------------

_MODES = {b"BRANCH_LEQ": 0, b"BRANCH_LT": 1, b"BRANCH_GTE": 2, b"BRANCH_GT": 3, b"BRANCH_EQ": 4, b"BRANCH_NEQ": 5,
          b"LEAF": 6}
_LEAF = 6
_COMPARE = (np.less_equal, np.less, np.greater_equal, np.greater, np.equal, np.not_equal)
_POST_OUTPUT = {b"NONE": "probability", b"LOGISTIC": "log_odds"}


def _pick(attrs: dict[str, Any], name: str, default: Any = None) -> np.ndarray | None:
    """An attribute or its double-precision `_as_tensor` twin (ai.onnx.ml opset 3), as float64."""
    for key in (f"{name}_as_tensor", name):
        if key in attrs and attrs[key] is not None:
            return np.asarray(attrs[key], dtype=np.float64).ravel()
    return None if default is None else np.asarray(default, dtype=np.float64)


@dataclass(frozen=True)
class _Trees:
    """A tree ensemble's nodes, tree by tree, each tree's nodes by node id ("global" index = offset + node id).
    `value` is each leaf's contribution to the explained output (positive-class score; averaged for AVERAGE)."""

    tree_ids: np.ndarray
    offsets: np.ndarray  # [trees + 1]
    roots: np.ndarray  # global index of each tree's root
    feature: np.ndarray
    threshold: np.ndarray
    mode: np.ndarray
    true_child: np.ndarray  # global index (leaves: themselves)
    false_child: np.ndarray
    tracks_true: np.ndarray  # bool: NaN goes to the true branch
    leaf: np.ndarray
    value: np.ndarray
    base: float
    output: str

    @property
    def n_nodes(self) -> int:
        return int(self.offsets[-1])

    def goes_true(self, xv: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
        """Whether x takes the true branch at the nodes `index`, given xv = x[feature[index]] (onnxruntime's
        semantics: the node's comparison, or NaN with missing_value_tracks_true)."""
        modes = self.mode[index]
        thresholds = self.threshold[index]
        present = np.unique(modes[modes != _LEAF])
        if present.size <= 1:
            go = _COMPARE[int(present[0]) if present.size else 0](xv, thresholds)
        else:
            go = np.zeros(np.broadcast_shapes(xv.shape, thresholds.shape), dtype=bool)
            for code in present:
                mask = modes == code
                go[..., mask] = _COMPARE[int(code)](xv[..., mask], thresholds[mask])
        tracks = self.tracks_true[index]
        if tracks.any():
            go |= tracks & np.isnan(xv)
        return go


def _read_trees(graph: _Graph) -> _Trees:
    node, attrs = graph.model_node, graph.model_attrs
    classifier = node.op_type == "TreeEnsembleClassifier"
    tree_of = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_id = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    features = np.asarray(attrs["nodes_featureids"], dtype=np.int64)
    values = _pick(attrs, "nodes_values", np.zeros(tree_of.size))
    modes = np.asarray([_MODES.get(m, -1) for m in attrs["nodes_modes"]], dtype=np.int8)
    if (modes < 0).any():
        raise ConfigurationError("the tree ensemble uses an unknown node mode")
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    tracks = np.asarray(attrs.get("nodes_missing_value_tracks_true", np.zeros(tree_of.size)), dtype=bool)
    if tracks.size == 0:
        tracks = np.zeros(tree_of.size, dtype=bool)
    prefix = "class" if classifier else "target"
    w_tree = np.asarray(attrs[f"{prefix}_treeids"], dtype=np.int64)
    w_node = np.asarray(attrs[f"{prefix}_nodeids"], dtype=np.int64)
    w_id = np.asarray(attrs[f"{prefix}_ids"], dtype=np.int64)
    weights = _pick(attrs, f"{prefix}_weights")
    base_values = _pick(attrs, "base_values", [])
    post = attrs.get("post_transform", b"NONE")
    if classifier:
        labels = attrs.get("classlabels_int64s", attrs.get("classlabels_strings"))
        if labels is None or len(labels) != 2:
            raise ConfigurationError("explanations cover binary classifiers (two class labels)")
        ids = set(np.unique(w_id).tolist())
        if ids == {0}:  # onnxruntime's binary case: one score column, the positive class's
            positive, negative = 0, None
        elif ids <= {0, 1}:
            positive, negative = 1, 0
        else:
            raise ConfigurationError(f"class ids {sorted(ids)} do not describe a binary classifier")
        if post == b"SOFTMAX" and negative is not None:
            output = "log_odds"  # log(p1 / p0) = score1 - score0
        elif post in _POST_OUTPUT:
            output = _POST_OUTPUT[post]
            negative = None
        else:
            raise ConfigurationError(f"post_transform {post.decode()!r} is not supported by explanations")
        sign = np.where(w_id == positive, 1.0, np.where(w_id == negative, -1.0, 0.0))
        if base_values.size not in ((0, 1) if ids == {0} else (0, 2)):
            raise ConfigurationError(f"{base_values.size} base values for class ids {sorted(ids)}")
        base = 0.0 if base_values.size == 0 else float(base_values[-1])
        if base_values.size == 2 and negative is not None:
            base -= float(base_values[0])
        average = False
    else:
        if int(attrs.get("n_targets", 1)) != 1:
            raise ConfigurationError("explanations cover single-target tree regressors")
        aggregate = attrs.get("aggregate_function", b"SUM")
        if aggregate not in (b"SUM", b"AVERAGE"):
            raise ConfigurationError(f"aggregate_function {aggregate.decode()!r} is not additive")
        if post != b"NONE":
            raise ConfigurationError(f"post_transform {post.decode()!r} is not supported for a tree regressor")
        sign = np.where(w_id == 0, 1.0, 0.0)
        base = float(base_values[0]) if base_values.size else 0.0
        average, output = aggregate == b"AVERAGE", "value"

    tree_ids = np.unique(tree_of)
    tree_index = np.searchsorted(tree_ids, tree_of)
    sizes = np.zeros(tree_ids.size, dtype=np.int64)
    np.maximum.at(sizes, tree_index, node_id + 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    gid = offsets[tree_index] + node_id
    if np.unique(gid).size != gid.size or total != gid.size:
        raise ConfigurationError("tree node ids must be 0..n-1 within each tree, each once")
    order = np.argsort(gid)
    feature = features[order]
    threshold = values[order]
    mode = modes[order]
    tracks_true = tracks[order]
    leaf = mode == _LEAF
    split = modes != _LEAF  # attribute order
    inner_ids = np.concatenate([true_ids[split], false_ids[split]])
    inner_tree = np.concatenate([tree_index[split]] * 2)
    if ((inner_ids < 0) | (inner_ids >= sizes[inner_tree])).any():
        raise ConfigurationError("a tree node names a child outside its tree")
    true_child = np.where(leaf, np.arange(total), (offsets[tree_index] + true_ids)[order])
    false_child = np.where(leaf, np.arange(total), (offsets[tree_index] + false_ids)[order])
    if (feature[~leaf] < 0).any() or (feature[~leaf] >= graph.column_source.size).any():
        raise ConfigurationError("a tree node splits on a feature the model's input does not have")
    leaf_value = np.zeros(total)
    w_tree_index = np.searchsorted(tree_ids, w_tree)
    if not np.array_equal(tree_ids[np.minimum(w_tree_index, tree_ids.size - 1)], w_tree):
        raise ConfigurationError("leaf weights name trees the ensemble does not have")
    np.add.at(leaf_value, offsets[w_tree_index] + w_node, weights * sign)
    if average:
        leaf_value /= tree_ids.size
    if np.any(leaf_value[~leaf] != 0):
        raise ConfigurationError("weights on inner tree nodes are not supported")
    references = np.bincount(np.concatenate([true_child[~leaf], false_child[~leaf]]), minlength=total)
    roots = np.flatnonzero(references == 0)
    reached, level = roots.size, roots
    while level.size and reached <= total:
        level = np.concatenate([true_child[level[~leaf[level]]], false_child[level[~leaf[level]]]])
        reached += level.size
    if roots.size != tree_ids.size or references.max(initial=0) > 1 or reached != total:
        raise ConfigurationError("the tree ensemble's nodes do not form trees (one root each, every other node the "
                                 "child of exactly one node, no cycles)")
    return _Trees(tree_ids=tree_ids, offsets=offsets, roots=roots, feature=feature, threshold=threshold, mode=mode,
                  true_child=true_child, false_child=false_child, tracks_true=tracks_true, leaf=leaf,
                  value=leaf_value, base=base, output=output)


def _route_counts(trees: _Trees, Z: np.ndarray) -> np.ndarray:
    """How many rows of Z (model inputs, float64) reach each node: [nodes] float64."""
    counts = np.zeros(trees.n_nodes)
    n_trees = trees.roots.size
    chunk = max(1, ROUTING_CHUNK // n_trees)
    for start in range(0, Z.shape[0], chunk):
        block = Z[start:start + chunk]
        rows = np.arange(block.shape[0])[:, None]
        current = np.broadcast_to(trees.roots, (block.shape[0], n_trees)).copy()
        counts[trees.roots] += block.shape[0]
        while True:
            inner = ~trees.leaf[current]
            if not inner.any():
                break
            at = current[inner]
            go = trees.goes_true(block[rows.repeat(n_trees, axis=1)[inner], trees.feature[at]], at)
            nxt = np.where(go, trees.true_child[at], trees.false_child[at])
            counts += np.bincount(nxt, minlength=trees.n_nodes)
            current[inner] = nxt
    return counts


@dataclass(frozen=True)
class _TreeBlock:
    """Precomputed tables for vectorised path-dependent TreeSHAP over a block of trees (see the module docstring).

    Nodes are laid out breadth first over the block's trees (roots first, so edges = positions n_roots..N-1, one
    edge into each non-root node; each inner node's two children adjacent, true child first). Arrays over edges:
    the parent's split (feature, threshold, mode, NaN branch), whether the edge is the true branch, and the
    interval of values the earlier splits on the same feature let through. Tables [3 E, Q] hold, per edge and
    choice (see _choice_table), the factor that extends the path product and the quadrature weights of the edge's
    share of its subtree's leaf sums."""

    n_roots: int
    edge_feature: np.ndarray
    edge_threshold: np.ndarray
    edge_mode: np.ndarray
    edge_tracks: np.ndarray
    edge_true: np.ndarray
    # Per edge [E, 1], the values the earlier splits on its feature let through: (lower, inclusive-lower mask,
    # upper, inclusive-upper mask, NaN passes), see _prior_intervals; None when some split is EQ/NEQ (then
    # rank_groups chains the splits instead).
    interval: tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray] | None
    rank_groups: tuple[tuple[np.ndarray, np.ndarray], ...]  # (edges of rank r >= 2, their previous split's edge)
    has_prev: np.ndarray
    prev: np.ndarray
    ratio_table: np.ndarray
    share_table: np.ndarray
    table_base: np.ndarray  # [E, 1]: 3 e
    ones: np.ndarray  # [Q]
    levels: tuple[tuple[int, int, np.ndarray], ...]  # (start, stop, parent positions) per level below the roots
    leaf_positions: np.ndarray  # leaves in depth-first order
    leaf_values: np.ndarray  # [leaves, 1, 1]
    edge_lo: np.ndarray  # leaf range (depth-first) of the node each edge leads into
    edge_hi: np.ndarray
    expected: float  # the block's expected raw output under the covers
    quadrature_points: int
    single_mode: int  # the comparison every split uses, or -1 when they differ
    any_tracks: bool

    @classmethod
    def build(cls, trees: _Trees, covers: np.ndarray, roots: np.ndarray) -> _TreeBlock:
        # Breadth-first layout.
        levels_nodes, parents = [roots], [np.full(roots.size, -1, dtype=np.int64)]
        start = 0
        while True:
            level = levels_nodes[-1]
            inner = ~trees.leaf[level]
            if not inner.any():
                break
            children = np.stack([trees.true_child[level[inner]], trees.false_child[level[inner]]], axis=1).ravel()
            levels_nodes.append(children)
            parents.append(np.repeat(start + np.flatnonzero(inner), 2))
            start += level.size
        nodes, parent = np.concatenate(levels_nodes), np.concatenate(parents)
        n_roots, n_nodes = roots.size, nodes.size
        n_edges = n_nodes - n_roots
        edge_parent = parent[n_roots:]
        parent_node = nodes[edge_parent]
        edge_feature = trees.feature[parent_node]
        edge_true = trees.true_child[parent_node] == nodes[n_roots:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = covers[nodes[n_roots:]] / covers[parent_node]
        ratio = np.where(np.isfinite(ratio), ratio, 0.0)  # a parent no training row reached
        parent_edge = edge_parent - n_roots  # -1 below a root

        # The previous split on the same feature along the path: walk up, all edges at once.
        prev = np.full(n_edges, -1, dtype=np.int64)
        candidate = parent_edge.copy()
        active = np.flatnonzero(candidate >= 0)
        while active.size:
            hit = edge_feature[candidate[active]] == edge_feature[active]
            prev[active[hit]] = candidate[active[hit]]
            active = active[~hit]
            candidate[active] = parent_edge[candidate[active]]
            active = active[candidate[active] >= 0]
        has_prev = prev >= 0
        source = np.maximum(prev, 0)

        # Top-down, level by level: merged zero fraction, rank of the split on its feature, unique features.
        zero = ratio.copy()
        rank = np.ones(n_edges, dtype=np.int64)
        unique = np.ones(n_edges, dtype=np.int64)
        level_slices = []
        offset = n_roots
        for level in levels_nodes[1:]:
            lo_e, hi_e = offset - n_roots, offset - n_roots + level.size
            sl = slice(lo_e, hi_e)
            zero[sl] = np.where(has_prev[sl], zero[source[sl]] * ratio[sl], ratio[sl])
            rank[sl] = np.where(has_prev[sl], rank[source[sl]] + 1, 1)
            up = parent_edge[sl]
            unique[sl] = np.where(up >= 0, unique[np.maximum(up, 0)], 0) + ~has_prev[sl]
            level_slices.append((offset, offset + level.size, parent[offset:offset + level.size]))
            offset += level.size
        leaf_edge = trees.leaf[nodes[n_roots:]]
        most_unique = int(unique[leaf_edge].max(initial=0))
        q = max(1, math.ceil(most_unique / 2))
        x, w = np.polynomial.legendre.leggauss(q)
        t, omega = ((x + 1) / 2)[:, None], (w / 2)[:, None]
        zero_prev = np.where(has_prev, zero[source], 1.0)
        hot = zero + (1 - zero) * t  # [Q, E]: the factor of a followed feature
        hot_prev = np.where(has_prev, hot[:, source], 1.0)
        share = omega * (1 - zero) / hot
        share_prev = np.where(has_prev, omega * (1 - zero_prev) / hot_prev, 0.0)
        rank_groups = []
        for r in range(2, int(rank.max(initial=1)) + 1):
            idx = np.flatnonzero(rank == r)
            rank_groups.append((idx, prev[idx]))
        edge_mode = trees.mode[parent_node]

        # Leaf ranges in depth-first order (true subtree first): leaf counts bottom-up, first leaf top-down.
        leaves = np.where(trees.leaf[nodes], 1, 0).astype(np.int64)
        for begin, end, up in reversed(level_slices):
            leaves[up[::2]] = leaves[begin:end:2] + leaves[begin + 1:end:2]
        first = np.zeros(n_nodes, dtype=np.int64)
        first[:n_roots] = np.concatenate([[0], np.cumsum(leaves[:n_roots])[:-1]])
        for begin, end, up in level_slices:
            first[begin:end:2] = first[up[::2]]
            first[begin + 1:end:2] = first[up[::2]] + leaves[begin:end:2]
        leaf_positions = np.flatnonzero(trees.leaf[nodes])
        leaf_positions = leaf_positions[np.argsort(first[leaf_positions])]
        leaf_values = trees.value[nodes[leaf_positions]]
        tree_root = np.arange(n_nodes)
        tree_root[n_roots:] = -1
        for begin, end, up in level_slices:
            tree_root[begin:end] = tree_root[up]
        root_cover = covers[nodes[tree_root[leaf_positions]]]
        expected = float(np.sum(leaf_values * covers[nodes[leaf_positions]] / root_cover))
        modes = np.unique(edge_mode)
        return cls(
            n_roots=n_roots, edge_feature=edge_feature, edge_threshold=trees.threshold[parent_node],
            edge_mode=edge_mode, edge_tracks=trees.tracks_true[parent_node], edge_true=edge_true,
            interval=_prior_intervals(edge_mode, trees.threshold[parent_node], edge_true,
                                      trees.tracks_true[parent_node], prev, rank_groups),
            rank_groups=tuple(rank_groups), has_prev=np.flatnonzero(has_prev), prev=prev[has_prev],
            ratio_table=_choice_table(np.broadcast_to(ratio, hot.shape), zero * (1 - t) / hot_prev,
                                      hot / hot_prev),
            share_table=_choice_table(np.zeros_like(hot), -(omega / (1 - t)) - share_prev, share - share_prev),
            table_base=3 * np.arange(n_edges, dtype=np.int64)[:, None], ones=np.ones(q),
            levels=tuple(level_slices), leaf_positions=leaf_positions, leaf_values=leaf_values[:, None, None],
            edge_lo=first[n_roots:], edge_hi=first[n_roots:] + leaves[n_roots:], expected=expected,
            quadrature_points=q, single_mode=int(modes[0]) if modes.size == 1 else -1,
            any_tracks=bool(trees.tracks_true[parent_node].any()))

    def _follows(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[edges, rows] twice: whether each row takes each edge at its parent's split, and whether it took every
        earlier split on the same feature along the path."""
        xv = np.ascontiguousarray(np.take(Z, self.edge_feature, axis=1).T)
        if self.single_mode >= 0:
            go = _COMPARE[self.single_mode](xv, self.edge_threshold[:, None])
        else:
            go = np.zeros(xv.shape, dtype=bool)
            for code in np.unique(self.edge_mode):
                mask = self.edge_mode == code
                go[mask] = _COMPARE[int(code)](xv[mask], self.edge_threshold[mask, None])
        missing = np.isnan(xv)
        if self.any_tracks:
            go |= self.edge_tracks[:, None] & missing
        follows = go == self.edge_true[:, None]
        if self.interval is None:
            merged = follows.copy()
            for idx, before in self.rank_groups:
                merged[idx] &= merged[before]
            prior = np.ones_like(follows)
            prior[self.has_prev] = merged[self.prev]
            return follows, prior
        lower, lower_loose, upper, upper_loose, nan_passes = self.interval
        # NaN compares False, so a missing value passes only through nan_passes.
        prior = xv > lower
        if lower_loose is not None:
            prior |= lower_loose & (xv == lower)
        prior &= (xv <= upper) if upper_loose is None else (xv < upper) | (upper_loose & (xv == upper))
        prior |= missing & nan_passes
        return follows, prior

    def contributions(self, Z: np.ndarray, n_columns: int) -> np.ndarray:
        """SHAP values of this block's trees: Z [rows, model input columns] float64 -> [rows, n_columns]."""
        # Layout [nodes or edges, rows, quadrature points]; gathers with np.take (several times faster than
        # fancy indexing on these shapes).
        rows, q, n_roots = Z.shape[0], self.quadrature_points, self.n_roots
        follows, prior = self._follows(Z)
        # Per edge and row: 0 = an earlier split on the feature was not followed, 1 = not followed, 2 = followed.
        choice = prior * (1 + follows.view(np.int8)) + self.table_base
        ratio = np.take(self.ratio_table, choice, axis=0)
        products = np.empty((n_roots + ratio.shape[0], rows, q))
        products[:n_roots] = 1.0
        for start, stop, parents in self.levels:
            np.multiply(np.take(products, parents, axis=0), ratio[start - n_roots:stop - n_roots],
                        out=products[start:stop])
        leaves = np.take(products, self.leaf_positions, axis=0)
        leaves *= self.leaf_values
        sums = np.zeros((self.leaf_positions.size + 1, rows, q))
        np.cumsum(leaves, axis=0, out=sums[1:])
        subtree = np.take(sums, self.edge_hi, axis=0)
        subtree -= np.take(sums, self.edge_lo, axis=0)
        subtree *= np.take(self.share_table, choice, axis=0)
        per_edge = (subtree.reshape(-1, q) @ self.ones).reshape(-1, rows)
        if rows == 1:
            return np.bincount(self.edge_feature, weights=per_edge[:, 0], minlength=n_columns)[None, :]
        index = self.edge_feature[:, None] + n_columns * np.arange(rows)
        return np.bincount(index.ravel(), weights=per_edge.ravel(), minlength=rows * n_columns
                           ).reshape(rows, n_columns)


@dataclass(frozen=True)
class _TreeShap:
    """Path-dependent TreeSHAP over a whole ensemble, in blocks of consecutive trees: each block's per-row arrays
    stay within a core's cache (measured on a 100-tree depth-10 forest: p50 6.2 ms a row in blocks of 16k nodes,
    24 ms in one block)."""

    blocks: tuple[_TreeBlock, ...]
    n_columns: int
    expected: float

    @classmethod
    def build(cls, trees: _Trees, covers: np.ndarray, n_columns: int) -> _TreeShap:
        covers = np.asarray(covers, dtype=np.float64)
        _check_covers(trees, covers)
        sizes = np.diff(trees.offsets)
        blocks, start, nodes = [], 0, 0
        for i, size in enumerate(sizes):
            if nodes and nodes + size > BLOCK_NODES:
                blocks.append(_TreeBlock.build(trees, covers, trees.roots[start:i]))
                start, nodes = i, 0
            nodes += int(size)
        blocks.append(_TreeBlock.build(trees, covers, trees.roots[start:]))
        return cls(tuple(blocks), n_columns, trees.base + sum(b.expected for b in blocks))

    @property
    def quadrature_points(self) -> int:
        return max(b.quadrature_points for b in self.blocks)

    def contributions(self, Z: np.ndarray) -> np.ndarray:
        """SHAP values on the raw output: Z [rows, model input columns] float64 -> [rows, columns] float64."""
        out = np.zeros((Z.shape[0], self.n_columns))
        for start in range(0, Z.shape[0], BATCH_ROWS):
            part = Z[start:start + BATCH_ROWS]
            for block in self.blocks:
                out[start:start + BATCH_ROWS] += block.contributions(part, self.n_columns)
        return out


def _prior_intervals(mode: np.ndarray, threshold: np.ndarray, edge_true: np.ndarray, tracks: np.ndarray,
                     prev: np.ndarray, rank_groups: Sequence[tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray] | None:
    """For each edge, the interval of values (and whether NaN) that pass every earlier split on its feature along
    the path: a row followed all of them iff its value lies there. None when EQ/NEQ splits make it no interval."""
    if np.isin(mode, (4, 5)).any():
        return None
    # The edge's own condition: LEQ true x <= t, false x > t; LT true x < t, false x >= t; GTE / GT mirrored.
    sets_upper = np.where(np.isin(mode, (0, 1)), edge_true, ~edge_true)
    strict = np.isin(mode, (1, 3)) == edge_true
    n = mode.size
    lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
    lower_strict, upper_strict = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    nan_after = np.where(tracks, edge_true, ~edge_true)
    after = [lower.copy(), lower_strict.copy(), upper.copy(), upper_strict.copy(), nan_after.copy()]
    # after[e]: the interval once edge e is taken; rank 1 edges start from everything.
    first = prev < 0
    _tighten(after, np.flatnonzero(first), sets_upper, strict, threshold,
             (lower[first], lower_strict[first], upper[first], upper_strict[first], np.ones(first.sum(), bool)))
    for idx, before in rank_groups:
        _tighten(after, idx, sets_upper, strict, threshold, tuple(a[before] for a in after))
    has = prev >= 0
    source = np.maximum(prev, 0)
    lower = np.where(has, after[0][source], -np.inf)[:, None]
    lower_loose = (has & ~after[1][source])[:, None]
    upper = np.where(has, after[2][source], np.inf)[:, None]
    upper_loose = (has & ~after[3][source])[:, None]
    upper_strict = (has & after[3][source]).any()
    nan_passes = np.where(has, after[4][source], True)[:, None]
    # x > lower, or x == lower where that bound is inclusive; x < upper, or x == upper where inclusive. The
    # inclusive masks are None when no bound is (lower) or every bound is (upper): LEQ splits need neither.
    return (lower, lower_loose if lower_loose.any() else None, upper, upper_loose if upper_strict else None,
            nan_passes)


def _tighten(after: list[np.ndarray], idx: np.ndarray, sets_upper: np.ndarray, strict: np.ndarray,
             threshold: np.ndarray, before: tuple[np.ndarray, ...]) -> None:
    lo, lo_s, hi, hi_s, nan_ok = before
    t, up, st = threshold[idx], sets_upper[idx], strict[idx]
    new_lo = ~up & ((t > lo) | ((t == lo) & st))
    new_hi = up & ((t < hi) | ((t == hi) & st))
    after[0][idx] = np.where(new_lo, t, lo)
    after[1][idx] = np.where(new_lo, st, lo_s)
    after[2][idx] = np.where(new_hi, t, hi)
    after[3][idx] = np.where(new_hi, st, hi_s)
    after[4][idx] = nan_ok & after[4][idx]


def _choice_table(prev_cold: np.ndarray, cold: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """Three [Q, E] tables -> [3 E, Q], row 3 e + choice (0: previous split on the feature not followed,
    1: this split not followed, 2: followed)."""
    return np.ascontiguousarray(np.stack([prev_cold.T, cold.T, hot.T], axis=1).reshape(-1, prev_cold.shape[0]))


def _check_covers(trees: _Trees, covers: np.ndarray) -> None:
    if covers.shape != (trees.n_nodes,):
        raise ConfigurationError(f"covers hold {covers.size} nodes; the tree ensemble has {trees.n_nodes}")
    if not np.all(np.isfinite(covers)) or (covers < 0).any():
        raise ConfigurationError("covers must be finite and non-negative")
    if (covers[trees.roots] <= 0).any():
        raise ConfigurationError("every tree's root needs a positive cover (no training rows reached it)")
    inner = ~trees.leaf
    children = covers[trees.true_child[inner]] + covers[trees.false_child[inner]]
    if not np.allclose(children, covers[inner], rtol=1e-9, atol=0):
        raise ConfigurationError("covers do not add up (each node's cover must be the sum of its children's): "
                                 "they do not belong to this model")


# ---- linear models -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Linear:
    """The linear model's positive-class raw score: coefficients [columns], intercept, output kind."""

    coefficients: np.ndarray
    intercept: float
    output: str

    @classmethod
    def read(cls, graph: _Graph) -> _Linear:
        if graph.model_node.op_type == "MatMul":
            return cls._from_matmul(graph)
        attrs = graph.model_attrs
        n_columns = graph.column_source.size
        coefficients = np.asarray(attrs["coefficients"], dtype=np.float64)
        intercepts = np.asarray(attrs.get("intercepts", np.zeros(coefficients.size // n_columns)), dtype=np.float64)
        if coefficients.size % n_columns:
            raise ConfigurationError(f"{coefficients.size} coefficients for {n_columns} model inputs")
        rows = coefficients.reshape(-1, n_columns)
        post = attrs.get("post_transform", b"NONE")
        if graph.model_node.op_type == "LinearRegressor":
            if rows.shape[0] != 1 or post != b"NONE":
                raise ConfigurationError("explanations cover single-target linear regressors without transform")
            return cls(rows[0], float(intercepts[0]), "value")
        labels = attrs.get("classlabels_ints", attrs.get("classlabels_strings"))
        if labels is None or len(labels) != 2:
            raise ConfigurationError("explanations cover binary linear classifiers (two class labels)")
        if post == b"LOGISTIC":
            return cls(rows[-1], float(intercepts[rows.shape[0] - 1]), "log_odds")
        if post == b"SOFTMAX" and rows.shape[0] == 2:
            return cls(rows[1] - rows[0], float(intercepts[1] - intercepts[0]), "log_odds")
        raise ConfigurationError(f"a linear classifier with post_transform {post.decode()!r} is not supported")

    @classmethod
    def _from_matmul(cls, graph: _Graph) -> _Linear:
        """scores = MatMul(z, W) [+ b], then Sigmoid (per class, normalised: p1 = sigmoid(s1) when s0 = -s1) or
        Softmax (log-odds s1 - s0)."""
        node = graph.model_node
        weights = np.asarray(graph.constants[node.input[1]], dtype=np.float64)
        if weights.ndim != 2 or weights.shape[0] != graph.column_source.size or weights.shape[1] not in (1, 2):
            raise ConfigurationError(f"MatMul ({node.name!r}) weights of shape {weights.shape} are not a binary "
                                     "linear model over its input")
        k = weights.shape[1]
        score, intercept = node.output[0], np.zeros(k)
        readers = graph.consumers.get(score, [])
        adds = [n for n in readers if n.op_type == "Add" and n.input[1] in graph.constants]
        if adds:
            intercept = np.broadcast_to(np.asarray(graph.constants[adds[0].input[1]], dtype=np.float64).ravel(),
                                        (k,)).copy()
            score = adds[0].output[0]
            readers = graph.consumers.get(score, [])
        activations = [n.op_type for n in readers if n.op_type in ("Sigmoid", "Softmax")]
        if activations[:1] == ["Sigmoid"]:
            if k == 1:
                return cls(weights[:, 0], float(intercept[0]), "log_odds")
            if np.array_equal(weights[:, 0], -weights[:, 1]) and intercept[0] == -intercept[1]:
                return cls(weights[:, 1], float(intercept[1]), "log_odds")
        elif activations[:1] == ["Softmax"] and k == 2:
            return cls(weights[:, 1] - weights[:, 0], float(intercept[1] - intercept[0]), "log_odds")
        raise ConfigurationError(f"MatMul ({node.name!r}) is not followed by a binary logistic output "
                                 "(Sigmoid over opposite scores, or Softmax over two)")


# ---- background: what training stores for explanations -----------------------------------------------------------

def _encode_array(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(values, dtype=dtype).tobytes(), 6)).decode()


def _decode_array(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).astype(np.float64)


def _check_training_rows(graph: _Graph, X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != graph.n_inputs or X.shape[0] == 0:
        raise ValidationError(f"training rows must be a non-empty [rows, {graph.n_inputs}] matrix, got shape "
                              f"{X.shape}")
    return X


def tree_covers(onnx_bytes: bytes, X_train: np.ndarray) -> list[np.ndarray]:
    """Node covers of the artifact's tree ensemble: how many of the training rows reach each node, routed exactly
    as onnxruntime routes them (the graph's preprocessing, e.g. imputation, applied first).

    X_train: [rows, features] in schema order (NaN = missing). Returns one float64 array per tree (trees in
    ascending tree id), indexed by node id. Path-dependent TreeSHAP weighs each branch by these counts (for a
    bagged forest they count every training row, not the in-bag sample scikit-learn stores).
    Raises ConfigurationError when the artifact holds no supported tree ensemble, ValidationError for X_train of
    the wrong shape."""
    graph = _read_graph(read_model(onnx_bytes))
    if not graph.model_node.op_type.startswith("TreeEnsemble"):
        raise ConfigurationError(f"the model is a {graph.model_node.op_type}, not a tree ensemble")
    trees = _read_trees(graph)
    counts = _route_counts(trees, graph.model_inputs(_check_training_rows(graph, X_train)))
    return [counts[a:b] for a, b in zip(trees.offsets[:-1], trees.offsets[1:], strict=True)]


def linear_baseline(onnx_bytes: bytes, X_train: np.ndarray) -> np.ndarray:
    """E[z]: the mean over the training rows of each input column of the artifact's linear model (after the graph's
    imputation, scaling and one-hot encoding), float64 [columns]. Raises as tree_covers."""
    graph = _read_graph(read_model(onnx_bytes))
    if graph.model_node.op_type.startswith("TreeEnsemble"):
        raise ConfigurationError(f"the model is a {graph.model_node.op_type}, not a linear model")
    return graph.model_inputs(_check_training_rows(graph, X_train)).mean(axis=0)


def background(onnx_bytes: bytes, X_train: np.ndarray) -> dict[str, Any]:
    """What explanations need from training, as a JSON-ready dict (`mlops.explainer` metadata entry):

    - trees: {"format": 1, "kind": "tree_covers", "rows": n, "trees": [nodes per tree], "covers": base64 of the
      zlib-compressed little-endian uint32 covers, trees concatenated in ascending tree id, nodes by node id}
    - linear: {"format": 1, "kind": "linear_baseline", "rows": n, "mean": [E[z_j] per model input column]}"""
    graph = _read_graph(read_model(onnx_bytes))
    X_train = _check_training_rows(graph, X_train)
    header = {"format": BACKGROUND_FORMAT, "rows": int(X_train.shape[0])}
    if not graph.model_node.op_type.startswith("TreeEnsemble"):
        return {**header, "kind": "linear_baseline", "mean": graph.model_inputs(X_train).mean(axis=0).tolist()}
    trees = _read_trees(graph)
    counts = _route_counts(trees, graph.model_inputs(X_train))
    if counts.max(initial=0) >= 2**32:
        raise ValidationError("more than 2^32 training rows reach one node")
    return {**header, "kind": "tree_covers", "trees": np.diff(trees.offsets).tolist(),
            "covers": _encode_array(counts, "<u4")}


def with_background(onnx_bytes: bytes, X_train: np.ndarray) -> bytes:
    """The artifact with its explanation background (see `background`) stored as the `mlops.explainer` metadata
    entry, so the covers or baseline travel with (and are hashed with) the model they describe.

    The entry is appended to the serialised ModelProto (a repeated field may be continued anywhere), so every
    other byte of the artifact is unchanged; an existing entry is replaced. Raises as tree_covers."""
    entry = _onnx_messages()["StringStringEntryProto"](
        key=METADATA_KEY, value=orjson.dumps(background(onnx_bytes, X_train)).decode())
    model = read_model(onnx_bytes)
    if any(e.key == METADATA_KEY for e in model.metadata_props):
        kept = [e for e in model.metadata_props if e.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        model.metadata_props.append(entry)
        return model.SerializeToString()
    payload = entry.SerializeToString()
    return bytes(onnx_bytes) + _varint(14 << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# ---- the explainer -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _FeatureInfo:
    name: str
    kind: str
    categories: tuple[str, ...]
    description: str | None
    accepts_missing: bool


def _features(metadata: dict[str, str], n_inputs: int) -> tuple[_FeatureInfo, ...]:
    if "mlops.features" not in metadata:
        return tuple(_FeatureInfo(f"x{j}", "numeric", (), None, True) for j in range(n_inputs))
    try:
        entries = orjson.loads(metadata["mlops.features"])
        features = tuple(_FeatureInfo(str(f["name"]), str(f.get("kind", "numeric")),
                                      tuple(str(c) for c in f.get("categories") or ()), f.get("description"),
                                      str(f.get("missing") or "reject") != "reject") for f in entries)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"the artifact's mlops.features metadata is unreadable: {exc}") from None
    if len(features) != n_inputs:
        raise ConfigurationError(f"mlops.features declares {len(features)} features; the graph reads {n_inputs}")
    return features


def _unfavourable_is_positive(metadata: dict[str, str]) -> bool:
    """The positive class is the unfavourable outcome unless the artifact names it favourable."""
    if "mlops.favorable_label" not in metadata or "mlops.positive_label" not in metadata:
        return True
    from mlops.core.schemas import same_label

    def label(text: str) -> Any:  # JSON as the mlops.* label entries are written; plain text tolerated
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text

    return not same_label(label(metadata["mlops.favorable_label"]), label(metadata["mlops.positive_label"]))


class Explainer:
    """Exact SHAP explanations of one served model, on its raw output (see the module docstring).

    Build with `Explainer.from_onnx`; `contributions` is the numeric core, `explain` the response shape."""

    def __init__(self, graph: _Graph, engine: _TreeShap | tuple[_Linear, np.ndarray], output: str,
                 base_value: float, unfavourable_positive: bool) -> None:
        self._graph = graph
        self._engine = engine
        self.output = output
        self.base_value = base_value
        self.features = _features(graph.metadata, graph.n_inputs)
        self.names = [f.name for f in self.features]
        self._unfavourable_sign = 1.0 if unfavourable_positive else -1.0
        self._reject_missing = np.asarray([not f.accepts_missing for f in self.features], dtype=bool)
        # model input column -> X column ([columns, features] 0/1), constants dropped (they contribute 0)
        source = graph.column_source
        mapping = np.zeros((source.size, graph.n_inputs))
        kept = source >= 0
        mapping[np.flatnonzero(kept), source[kept]] = 1.0
        self._to_features = mapping

    @classmethod
    def from_onnx(cls, onnx_bytes: bytes, covers: Sequence[np.ndarray] | np.ndarray | None = None,
                  baseline: np.ndarray | None = None, unfavourable_positive: bool | None = None) -> Explainer:
        """Read the artifact once and precompute everything a row needs.

        covers: per tree (ascending tree id) node covers indexed by node id (`tree_covers`); baseline: the linear
        model's input means (`linear_baseline`). Both default to the artifact's `mlops.explainer` entry.
        unfavourable_positive: whether reasons point toward the positive class (default: yes, unless metadata
        `mlops.favorable_label` names the positive class favourable).
        Raises ConfigurationError for graphs it cannot explain or a missing/mismatched background."""
        graph = _read_graph(read_model(onnx_bytes))
        stored = graph.metadata.get(METADATA_KEY)
        if stored is not None and covers is None and baseline is None:
            try:
                entry = orjson.loads(stored)
                if entry.get("format") != BACKGROUND_FORMAT:
                    raise ConfigurationError(f"{METADATA_KEY} format {entry.get('format')!r} is not supported")
                if entry["kind"] == "tree_covers":
                    covers = _decode_array(entry["covers"], "<u4")
                else:
                    baseline = np.asarray(entry["mean"], dtype=np.float64)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, zlib.error) as exc:
                raise ConfigurationError(f"the artifact's {METADATA_KEY} metadata is unreadable: {exc}") from None
        if unfavourable_positive is None:
            unfavourable_positive = _unfavourable_is_positive(graph.metadata)
        n_columns = graph.column_source.size
        if graph.model_node.op_type.startswith("TreeEnsemble"):
            if covers is None:
                raise ConfigurationError("this artifact carries no node covers (trained before explanations); "
                                         "explanations need covers from the training rows (tree_covers)")
            trees = _read_trees(graph)
            flat = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in covers]) \
                if not isinstance(covers, np.ndarray) else covers.astype(np.float64).ravel()
            engine = _TreeShap.build(trees, flat, n_columns)
            return cls(graph, engine, trees.output, engine.expected, unfavourable_positive)
        linear = _Linear.read(graph)
        if baseline is None:
            raise ConfigurationError("this artifact carries no training baseline (trained before explanations); "
                                     "explanations need the mean model input over the training rows "
                                     "(linear_baseline)")
        mean = np.asarray(baseline, dtype=np.float64).ravel()
        if mean.size != n_columns or not np.all(np.isfinite(mean)):
            raise ConfigurationError(f"the baseline holds {mean.size} values; the linear model reads {n_columns}")
        base = float(linear.coefficients @ mean + linear.intercept)
        return cls(graph, (linear, mean), linear.output, base, unfavourable_positive)

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self._graph.n_inputs:
            raise ValidationError(f"explanations need rows of {self._graph.n_inputs} features, got shape "
                                  f"{X.shape}")
        if X.dtype.kind not in "fiu":
            raise ValidationError(f"explanations need numbers, got dtype {X.dtype}")
        X = X.astype(np.float64, copy=False)
        if np.isinf(X).any():
            raise ValidationError("explanations need finite values (NaN marks a missing value)")
        if self._reject_missing.any():
            missing = np.isnan(X[:, self._reject_missing]).any(axis=0)
            if missing.any():
                names = [n for n, m in zip(np.asarray(self.names)[self._reject_missing], missing, strict=True) if m]
                raise ValidationError(f"missing values for features that do not accept them: {names}")
        return X

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """SHAP values per original feature on the raw output: X [rows, features] (schema order, NaN = missing,
        categorical index, k = other) -> float64 [rows, features]; base_value + row sum = the model's raw output
        (self.output: "log_odds", "probability" or "value"). Raises ValidationError for malformed X."""
        return self._contributions(self._matrix(X))

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        Z = self._graph.model_inputs(X)
        if isinstance(self._engine, _TreeShap):
            per_column = self._engine.contributions(Z)
        else:
            linear, mean = self._engine
            per_column = (Z - mean) * linear.coefficients
        return per_column @ self._to_features

    def raw_output(self, X: np.ndarray) -> np.ndarray:
        """The model's raw output per row, as the explanations decompose it (float64 [rows])."""
        return self.base_value + self.contributions(X).sum(axis=1)

    def explain(self, X: np.ndarray, top: int | None = None) -> list[dict[str, Any]]:
        """One explanation per row: {"output", "base_value", "contributions": {feature: value}, "reasons": [...]}.

        reasons: the features pushing toward the unfavourable outcome, strongest first (at most `top`; None: all),
        each {"feature", "value" (the input: number, category name, "other" or None when missing),
        "contribution", "description" (when the family declares one)}. Raises ValidationError for malformed X
        or a negative `top`."""
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 0):
            raise ValidationError(f"top must be a non-negative integer, got {top!r}")
        X = self._matrix(X)
        phi = self._contributions(X)
        toward = phi * self._unfavourable_sign
        order = np.argsort(-toward, axis=1, kind="stable").tolist()
        counts = np.count_nonzero(toward > 0, axis=1).tolist()
        names, features, output, base = self.names, self.features, self.output, self.base_value
        out = []
        for x, row, ranked, count in zip(X.tolist(), phi.tolist(), order, counts, strict=True):
            reasons = []
            for j in ranked[:count if top is None else min(top, count)]:
                feature = features[j]
                reason: dict[str, Any] = {"feature": feature.name, "value": _display(feature, x[j]),
                                          "contribution": row[j]}
                if feature.description:
                    reason["description"] = feature.description
                reasons.append(reason)
            out.append({"output": output, "base_value": base, "contributions": dict(zip(names, row, strict=True)),
                        "reasons": reasons})
        return out

    def global_importance(self, X: np.ndarray) -> dict[str, float]:
        """Mean |contribution| per feature over the rows of X (e.g. the holdout), the usual SHAP global
        importance (Lundberg et al. 2020)."""
        return dict(zip(self.names, np.abs(self.contributions(X)).mean(axis=0).tolist(), strict=True))


def _display(feature: _FeatureInfo, value: float) -> Any:
    if math.isnan(value):
        return None
    if feature.kind == "categorical":
        index = int(value)
        return feature.categories[index] if 0 <= index < len(feature.categories) else "other"
    return value
