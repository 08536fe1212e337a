"""ONNX models for the integration suite and bench/serve, built with Debian's
python3-onnx (onnx.helper) and numpy, which are also the references for their
outputs: nothing here comes from tern.

- identity_model / add_model: one op per datatype, for round trips;
- tagged_model: y = x + tag (FP32), the tag being the version number, so a
  response proves which version computed it; with `work` > 0 it also runs a
  chain of `work` 256x256 MatMul+Tanh steps (output "busy") so requests stay
  in flight long enough for hot-swap and drain tests;
- mlp_model: 784-512-256-10 with ReLU and Softmax, random weights, and
  mlp_reference computing the same math in numpy.
"""
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 13)]

# KServe datatype -> (numpy dtype, ONNX element type)
DATATYPES = {
    "BOOL": (np.bool_, TensorProto.BOOL),
    "UINT8": (np.uint8, TensorProto.UINT8),
    "UINT16": (np.uint16, TensorProto.UINT16),
    "UINT32": (np.uint32, TensorProto.UINT32),
    "UINT64": (np.uint64, TensorProto.UINT64),
    "INT8": (np.int8, TensorProto.INT8),
    "INT16": (np.int16, TensorProto.INT16),
    "INT32": (np.int32, TensorProto.INT32),
    "INT64": (np.int64, TensorProto.INT64),
    "FP16": (np.float16, TensorProto.FLOAT16),
    "FP32": (np.float32, TensorProto.FLOAT),
    "FP64": (np.float64, TensorProto.DOUBLE),
    "BYTES": (np.object_, TensorProto.STRING),
}


def save(model, path):
    """Writes atomically (temp file + rename) so a polling server never sees
    half a file."""
    path = str(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, path)
    return path


def identity_model(elem, shape=None):
    x = helper.make_tensor_value_info("x", elem, shape)
    y = helper.make_tensor_value_info("y", elem, shape)
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(g, opset_imports=OPSET)


def two_output_model():
    """x FP32 [-1, 3] -> sum = x + 1, prod = x * 2 (two outputs, for requested outputs)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 3])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["n", 3])
    one = numpy_helper.from_array(np.array(1, np.float32), "one")
    two = numpy_helper.from_array(np.array(2, np.float32), "two")
    nodes = [helper.make_node("Add", ["x", "one"], ["sum"]),
             helper.make_node("Mul", ["x", "two"], ["prod"])]
    g = helper.make_graph(nodes, "two", [x], [s, p], [one, two])
    return helper.make_model(g, opset_imports=OPSET)


def add_model(elem, np_dt):
    """a + b, both [2, 3] of the given type (two inputs)."""
    a = helper.make_tensor_value_info("a", elem, [2, 3])
    b = helper.make_tensor_value_info("b", elem, [2, 3])
    c = helper.make_tensor_value_info("c", elem, [2, 3])
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add", [a, b], [c])
    return helper.make_model(g, opset_imports=OPSET)


def tagged_model(tag, work=0, n=256):
    """x FP32 [-1] -> y = x + tag; with work > 0, also busy = sum of a chain of
    `work` steps A = tanh(A @ W) starting from A = W * x[0]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    inits = [numpy_helper.from_array(np.array([tag], np.float32), "tag")]
    nodes = [helper.make_node("Add", ["x", "tag"], ["y"])]
    outputs = [y]
    if work > 0:
        rng = np.random.default_rng(7)
        w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
        inits += [numpy_helper.from_array(w, "W"),
                  numpy_helper.from_array(np.array([0], np.int64), "zero"),
                  numpy_helper.from_array(np.array([1], np.int64), "one")]
        # first element of x, so A keeps the shape of W whatever n is
        nodes.append(helper.make_node("Slice", ["x", "zero", "one"], ["x0"]))
        nodes.append(helper.make_node("Mul", ["W", "x0"], ["a0"]))
        prev = "a0"
        for i in range(work):
            nodes.append(helper.make_node("MatMul", [prev, "W"], [f"m{i}"]))
            nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"a{i + 1}"]))
            prev = f"a{i + 1}"
        nodes.append(helper.make_node("ReduceSum", [prev], ["busy"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("busy", TensorProto.FLOAT, []))
    g = helper.make_graph(nodes, "tagged", [x], outputs, inits)
    return helper.make_model(g, opset_imports=OPSET)


MLP_DIMS = (784, 512, 256, 10)


def mlp_weights(seed=0, dims=MLP_DIMS):
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for i in range(len(dims) - 1):
        ws.append((rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32))
        bs.append((rng.standard_normal(dims[i + 1]) * 0.1).astype(np.float32))
    return ws, bs


def mlp_model(seed=0, dims=MLP_DIMS):
    """x FP32 [-1, 784] -> probs FP32 [-1, 10]: ReLU layers (two by default),
    then Softmax."""
    ws, bs = mlp_weights(seed, dims)
    n = len(dims) - 1
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dims[0]])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", dims[-1]])
    inits, nodes, prev = [], [], "x"
    for i in range(n):
        inits += [numpy_helper.from_array(ws[i], f"w{i}"), numpy_helper.from_array(bs[i], f"b{i}")]
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"h{i}"]))
        if i < n - 1:
            nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [f"h{n - 1}"], ["probs"], axis=-1))
    g = helper.make_graph(nodes, "mlp", [x], [y], inits)
    return helper.make_model(g, opset_imports=OPSET)


def mlp_reference(x, seed=0, dims=MLP_DIMS):
    ws, bs = mlp_weights(seed, dims)
    n = len(dims) - 1
    h = x.astype(np.float64)
    for i in range(n):
        h = h @ ws[i].astype(np.float64) + bs[i]
        if i < n - 1:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
