"""Builds the demo models `make run` uses, with onnx.helper and fixed seeds:
  mlp.onnx         784-128-10 MLP with softmax (batch dimension "N")
  classifier.onnx  a small conv net on 1x28x28 images
Usage: /usr/bin/python3 scripts/make_demo_models.py OUTDIR"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save


def w(name, shape, rng):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)


def mlp(rng):
    inits = [w("w1", (784, 128), rng), w("b1", (128,), rng), w("w2", (128, 10), rng), w("b2", (10,), rng)]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
        helper.make_node("Add", ["l0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tern-demo")


def classifier(rng):
    inits = [w("c1", (8, 1, 3, 3), rng), w("cb1", (8,), rng), w("fc", (8 * 14 * 14, 10), rng),
             w("fb", (10,), rng), numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    nodes = [
        helper.make_node("Conv", ["x", "c1", "cb1"], ["y1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y1"], ["y2"]),
        helper.make_node("MaxPool", ["y2"], ["y3"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["y3", "flat"], ["y4"]),
        helper.make_node("Gemm", ["y4", "fc", "fb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    g = helper.make_graph(nodes, "classifier",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tern-demo")


def main():
    main_to(sys.argv[1])


def main_to(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    save(mlp(rng), os.path.join(out, "mlp.onnx"))
    save(classifier(rng), os.path.join(out, "classifier.onnx"))
    np.save(os.path.join(out, "mlp_x.npy"), rng.random((2, 784), dtype=np.float32))
    np.save(os.path.join(out, "classifier_x.npy"), rng.random((1, 1, 28, 28), dtype=np.float32))


if __name__ == "__main__":
    main()
