"""Models that exercise the memory planner (test_memplan.c), with references.

    /usr/bin/python3 memplan_models.py OUT_DIR

For each model NAME it writes OUT_DIR/NAME.onnx and, per input set K,
OUT_DIR/NAME.K.in.<input>.npy and OUT_DIR/NAME.K.ref.<output>.npy. The
references are computed here with numpy, independently of tern. Every model
is built so that a tensor freed too early would be overwritten by a later one
and change an output: views (Reshape, Identity, Flatten, SequenceAt, an If
returning an outer value) outlive the value they view, values are read long
after they were made, outputs are also read by later nodes, and some outputs
of multi-output nodes are never read.
"""

import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

OPSET = [helper.make_opsetid("", 13)]
F = TensorProto.FLOAT


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def chain():
    """A long elementwise chain with views and late reads."""
    n = helper.make_node
    nodes = [
        n("Relu", ["x"], ["n1"]),
        n("Mul", ["n1", "half"], ["n2"]),
        n("Add", ["n2", "x"], ["n3"]),
        n("Reshape", ["n3", "shape3"], ["r"]),
        n("Identity", ["r"], ["i"]),
        n("Sigmoid", ["n3"], ["n4"]),
        n("Add", ["n4", "n1"], ["n5"]),
        n("Tanh", ["n5"], ["n6"]),
        n("Flatten", ["i"], ["f"], axis=1),
        n("Mul", ["n6", "f"], ["n7"]),
        n("Neg", ["n7"], ["n8"]),
        n("Abs", ["n8"], ["n9"]),
        n("Sqrt", ["n9"], ["n10"]),
        n("Add", ["n10", "n6"], ["n11"]),
        n("Exp", ["n11"], ["n12"]),
        n("Add", ["n12", "n2"], ["y"]),
        n("Reshape", ["n5", "shape2"], ["alias_out"]),
        n("TopK", ["y", "k"], ["top", "top_idx_unused"], axis=1),
        n("Split", ["n12"], ["half_a", "half_b_unused"], axis=1),
        n("Mul", ["half_a", "half"], ["split_out"]),
    ]
    rows, cols = 64, 1024
    inits = [
        const("half", np.float32(0.5)),
        const("shape3", np.array([rows, 32, 32], np.int64)),
        const("shape2", np.array([rows * 2, cols // 2], np.int64)),
        const("k", np.array([3], np.int64)),
    ]
    g = helper.make_graph(
        nodes, "chain", [vi("x", F, [rows, cols])],
        [vi("y", F, [rows, cols]), vi("alias_out", F, [rows * 2, cols // 2]),
         vi("n6", F, [rows, cols]), vi("top", F, [rows, 3]),
         vi("split_out", F, [rows, cols // 2])], inits)

    def ref(x):
        n1 = np.maximum(x, 0)
        n2 = n1 * np.float32(0.5)
        n3 = n2 + x
        n5 = sigmoid(n3) + n1
        n6 = np.tanh(n5)
        n7 = n6 * n3
        n11 = np.sqrt(np.abs(-n7)) + n6
        n12 = np.exp(n11)
        y = n12 + n2
        top = -np.sort(-y, axis=1)[:, :3]
        return {"y": y, "alias_out": n5.reshape(rows * 2, cols // 2), "n6": n6,
                "top": top, "split_out": n12[:, : cols // 2] * np.float32(0.5)}

    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((rows, cols)).astype(np.float32)]
    return g, [({"x": x}, ref(x)) for x in xs]


def control():
    """If returning an intermediate of the outer graph; Loop reading one."""
    n = helper.make_node
    then_g = helper.make_graph([], "then", [], [vi("a", F, [8, 32])])
    else_g = helper.make_graph([n("Mul", ["b", "two"], ["eb"])], "else", [],
                               [vi("eb", F, [8, 32])])
    body = helper.make_graph(
        [n("Add", ["v_in", "a2"], ["v_out"]), n("Identity", ["cond_in"], ["cond_out"]),
         n("Mul", ["v_out", "two"], ["scan_out"])],
        "body", [vi("iter", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []),
                 vi("v_in", F, [8, 32])],
        [vi("cond_out", TensorProto.BOOL, []), vi("v_out", F, [8, 32]),
         vi("scan_out", F, [8, 32])])
    nodes = [
        n("Relu", ["x"], ["a"]),
        n("Neg", ["a"], ["na"]),
        n("Exp", ["na"], ["b"]),
        n("Sigmoid", ["x"], ["a2"]),
        n("If", ["cond"], ["if_out"], then_branch=then_g, else_branch=else_g),
        n("Add", ["if_out", "one"], ["y1"]),
        n("Loop", ["trips", "", "b"], ["loop_final", "loop_scan"], body=body),
        n("Mul", ["x", "two"], ["x2"]),
        n("Add", ["x2", "loop_final"], ["y2"]),
    ]
    inits = [const("one", np.float32(1)), const("two", np.float32(2)),
             const("trips", np.int64(3))]
    g = helper.make_graph(
        nodes, "control", [vi("x", F, [8, 32]), vi("cond", TensorProto.BOOL, [])],
        [vi("y1", F, [8, 32]), vi("y2", F, [8, 32]), vi("loop_scan", F, [3, 8, 32])], inits)

    def ref(x, cond):
        a = np.maximum(x, 0)
        b = np.exp(-a)
        a2 = sigmoid(x)
        y1 = (a if cond else b * 2) + 1
        v, scans = b, []
        for _ in range(3):
            v = v + a2
            scans.append(v * 2)
        return {"y1": y1, "y2": x * 2 + v, "loop_scan": np.stack(scans)}

    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    return g, [({"x": x, "cond": np.array(c)}, ref(x, c)) for c in (True, False)]


def sequences():
    """Sequences hold tensors whose values are otherwise dead."""
    n = helper.make_node
    nodes = [
        n("Relu", ["x"], ["a"]),
        n("Neg", ["x"], ["b"]),
        n("SequenceConstruct", ["a", "b"], ["s"]),
        n("Sigmoid", ["x"], ["pad"]),  # allocated while a and b are only in s
        n("SequenceAt", ["s", "one"], ["e"]),
        n("ConcatFromSequence", ["s"], ["c"], axis=0),
        n("Add", ["e", "pad"], ["y1"]),
        n("SplitToSequence", ["c", "sizes"], ["sp"], axis=0),
        n("SequenceAt", ["sp", "minus_one"], ["z"]),
        n("Mul", ["z", "three"], ["y2"]),
    ]
    inits = [const("one", np.int64(1)), const("minus_one", np.int64(-1)),
             const("sizes", np.array([4, 8], np.int64)), const("three", np.float32(3))]
    g = helper.make_graph(nodes, "sequences", [vi("x", F, [6, 10])],
                          [vi("y1", F, [6, 10]), vi("y2", F, [8, 10])], inits)

    def ref(x):
        c = np.concatenate([np.maximum(x, 0), -x])
        return {"y1": -x + sigmoid(x), "y2": c[4:] * 3}

    x = np.random.default_rng(3).standard_normal((6, 10)).astype(np.float32)
    return g, [({"x": x}, ref(x))]


def dynamic():
    """Output size depends on the data: the same input shape asks for
    different sizes, so a recorded plan must be abandoned, not replayed."""
    n = helper.make_node
    nodes = [
        n("Greater", ["x", "zero"], ["m"]),
        n("Compress", ["x", "m"], ["pos"], axis=0),
        n("Mul", ["pos", "two"], ["y"]),
        n("Relu", ["x"], ["r"]),
        n("ReduceSum", ["y"], ["total"], keepdims=1),
        n("Add", ["r", "total"], ["y2"]),
    ]
    inits = [const("zero", np.float32(0)), const("two", np.float32(2))]
    g = helper.make_graph(nodes, "dynamic", [vi("x", F, [4096])],
                          [vi("y", F, ["k"]), vi("y2", F, [4096])], inits)

    def ref(x):
        y = x[x > 0] * 2
        return {"y": y, "y2": np.maximum(x, 0) + y.sum(dtype=np.float64).astype(np.float32)}

    rng = np.random.default_rng(4)
    sets = []
    for share in (0.25, 0.75, 0.25):
        x = np.abs(rng.standard_normal(4096)).astype(np.float32) + 0.1
        x[rng.random(4096) >= share] *= -1
        sets.append(({"x": x}, ref(x)))
    return g, sets


def strings():
    """String tensors: element pointers must survive their array's reuse."""
    n = helper.make_node
    S = TensorProto.STRING
    nodes = [
        n("StringNormalizer", ["x"], ["u"], case_change_action="UPPER"),
        n("Identity", ["u"], ["ui"]),
        n("StringNormalizer", ["x"], ["l"], case_change_action="LOWER"),
        n("Concat", ["ui", "l"], ["y"], axis=0),
    ]
    g = helper.make_graph(nodes, "strings", [vi("x", S, [5])], [vi("y", S, [10])])
    x = np.array(["Alpha", "beta", "GAMMA", "dElTa", "e"])
    return g, [({"x": x}, {"y": np.concatenate([np.char.upper(x), np.char.lower(x)])})]


def conv2d(x, w, b):
    """numpy reference of a 3x3 convolution, stride 1, padding 1."""
    n, c, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return (y + b[None, :, None, None]).astype(np.float32)


def convs():
    """Convolutions take scratch buffers; between them values die, so the
    scratch of one node and the tensors freed after the one before mix."""
    n = helper.make_node
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2 for _ in range(4)]
    bs = [rng.standard_normal(8).astype(np.float32) * 0.1 for _ in range(4)]
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        inits += [const(f"w{i}", ws[i]), const(f"b{i}", bs[i])]
        nodes += [n("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  n("Relu", [f"c{i}"], [f"r{i}"])]
        prev = f"r{i}"
    nodes.append(n("Add", [prev, "x"], ["y"]))
    g = helper.make_graph(nodes, "convs", [vi("x", F, [2, 8, 20, 20])],
                          [vi("y", F, [2, 8, 20, 20])], inits)

    def ref(x):
        h = x
        for i in range(4):
            h = np.maximum(conv2d(h, ws[i], bs[i]), 0)
        return {"y": h + x}

    x = rng.standard_normal((2, 8, 20, 20)).astype(np.float32)
    return g, [({"x": x}, ref(x))]


MODELS = {"chain": chain, "convs": convs, "control": control, "sequences": sequences, "dynamic": dynamic,
          "strings": strings}


def main(out_dir, models=None, opset=None):
    """Writes OUT_DIR/<name>.onnx and <name>.<set>.in|ref.<tensor>.npy for every
    model builder (inplace_models.py passes its own, and its opset)."""
    os.makedirs(out_dir, exist_ok=True)
    for name, build in (models or MODELS).items():
        g, sets = build()
        save(helper.make_model(g, opset_imports=opset or OPSET), os.path.join(out_dir, name + ".onnx"))
        for k, (ins, refs) in enumerate(sets):
            for key, v in ins.items():
                np.save(os.path.join(out_dir, f"{name}.{k}.in.{key}.npy"), v)
            for key, v in refs.items():
                np.save(os.path.join(out_dir, f"{name}.{k}.ref.{key}.npy"), v)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
