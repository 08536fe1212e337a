"""Models for the in-place execution test (test_inplace.c), with references.

    /usr/bin/python3 inplace_models.py OUT_DIR

For each model NAME it writes OUT_DIR/NAME.onnx and, per input set K,
OUT_DIR/NAME.K.in.<input>.npy and OUT_DIR/NAME.K.ref.<output>.npy, the
references computed here with numpy, independently of tern.

- chain: MatMul -> Add -> Relu -> Sigmoid on 1 MiB tensors, where the three
  elementwise nodes can each write over the tensor the node before made, so
  the peak drops from two tensors to one.
- guards: every place where writing over an input would be wrong, next to
  places where it is right: graph inputs, initializers and graph outputs
  that are read again, values still read later, a view alive past the value
  it views, broadcast operands, the third input of Sum (also when it holds
  the first one's value), LogSoftmax (whose kernel cannot run in place),
  and the kernels that can (unary and binary
  arithmetic in float32, float16 and int32, Where, Clip, PRelu, Pow,
  Softmax on the last and on a strided axis, Hardmax, LayerNormalization,
  BatchNormalization, InstanceNormalization, com.tern Gelu). A wrong reuse
  changes an output.
- branch: an If whose then-branch returns an intermediate of the main graph
  (the next node may write over it) and whose else-branch returns its own
  tensor (it may not): the in-place decision depends on the data, and
  replays of a plan recorded with the other branch must still be right.
- conv: Conv -> x * Sigmoid(x) (SiLU, which no pass fuses into the Conv):
  with oneDNN the Conv's output is channel-blocked, and the plain copy the
  executor makes of it for each reader may become that reader's output.
"""

import math
import sys

import numpy as np

import memplan_models  # its writer; this folder is on sys.path when run as a script
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]
F = TensorProto.FLOAT
vi, const, sigmoid = memplan_models.vi, memplan_models.const, memplan_models.sigmoid


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def chain():
    n = helper.make_node
    rows, k, cols = 256, 64, 1024
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((k, cols)) * 0.1).astype(np.float32)
    nodes = [n("MatMul", ["x", "w"], ["m"]), n("Add", ["m", "y"], ["a"]),
             n("Relu", ["a"], ["r"]), n("Sigmoid", ["r"], ["out"])]
    g = helper.make_graph(nodes, "chain", [vi("x", F, [rows, k]), vi("y", F, [rows, cols])],
                          [vi("out", F, [rows, cols])], [const("w", w)])
    x = rng.standard_normal((rows, k)).astype(np.float32)
    y = rng.standard_normal((rows, cols)).astype(np.float32)
    ref = sigmoid(np.maximum(x.astype(np.float64) @ w + y, 0)).astype(np.float32)
    return g, [({"x": x, "y": y}, {"out": ref})]


def guards():
    n = helper.make_node
    rows, cols = 16, 48
    rng = np.random.default_rng(2)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    lscale = rng.standard_normal(cols).astype(np.float32)
    lbias = rng.standard_normal(cols).astype(np.float32)
    slope = np.full(cols, 0.25, np.float32)
    ch = 4
    bn = [rng.standard_normal(ch).astype(np.float32) for _ in range(3)]
    bn_var = (rng.random(ch) + 0.5).astype(np.float32)
    nodes = [
        n("Relu", ["x"], ["r"]),                    # x: a graph input, kept
        n("Sigmoid", ["r"], ["s"]),                 # r is read again below
        n("Add", ["s", "r"], ["t"]),                # both die: one is reused
        n("Reshape", ["t", "shape_t"], ["tv"]),     # a view of t ...
        n("Tanh", ["t"], ["u"]),                    # ... alive past t's last reader
        n("Mul", ["u", "u"], ["u2"]),               # the same value twice
        n("Neg", ["tv"], ["tv_neg"]),               # the view's last reader
        n("Reshape", ["tv_neg", "shape_x"], ["tvn"]),
        n("Exp", ["u2"], ["g"]),                    # g: a graph output ...
        n("Neg", ["g"], ["h"]),                     # ... read again
        n("ReduceMean", ["u2"], ["row"], axes=[0], keepdims=1),  # [1, cols]
        n("Sub", ["row", "h"], ["k"]),              # input 0 broadcast: only h may go
        n("Add", ["w", "k"], ["c"]),                # w: an initializer
        n("Sigmoid", ["c"], ["d"]),
        n("Neg", ["c"], ["e"]),
        n("Sum", ["c", "d", "e"], ["sm"]),          # c, d read later: e dies here
        n("Sum", ["c", "d", "sm"], ["cd"]),         # (after sm, which it reads)
        n("Mul", ["cd", "tvn"], ["p0"]),
        n("Greater", ["p0", "zero"], ["cond"]),
        n("Neg", ["p0"], ["wn"]),
        n("Where", ["cond", "sm", "wn"], ["wh"]),
        n("Clip", ["wh", "lo", "hi"], ["cl"]),
        n("PRelu", ["cl", "slope"], ["pr"]),
        n("Pow", ["pr", "two"], ["pw"]),
        n("Div", ["pw", "three"], ["dv"]),
        n("Softmax", ["dv"], ["sf"], axis=-1),
        n("Softmax", ["sf"], ["sf0"], axis=0),      # a strided axis: the tiled kernel
        n("LogSoftmax", ["sf0"], ["ls"], axis=-1),  # not in place
        n("Neg", ["x"], ["xn"]),
        n("Hardmax", ["xn"], ["hm"], axis=-1),
        n("Add", ["hm", "ls"], ["hl"]),
        n("LayerNormalization", ["hl", "lscale", "lbias"], ["ln"], axis=-1),
        n("Reshape", ["ln", "shape4"], ["l4"]),
        n("BatchNormalization", ["l4", "bn_s", "bn_b", "bn_m", "bn_v"], ["bnr"]),
        n("InstanceNormalization", ["bnr", "bn_s", "bn_b"], ["inr"]),
        n("Reshape", ["inr", "shape_x"], ["in2"]),
        n("Gelu", ["in2"], ["ge"], domain="com.tern"),
        n("Cast", ["x"], ["h16"], to=TensorProto.FLOAT16),
        n("Relu", ["h16"], ["h16r"]),
        n("Mul", ["h16r", "h16r"], ["h16m"]),
        n("Cast", ["h16m"], ["f16back"], to=TensorProto.FLOAT),
        n("Mul", ["x", "hundred"], ["x100"]),
        n("Cast", ["x100"], ["i32"], to=TensorProto.INT32),
        n("Neg", ["i32"], ["i32n"]),
        n("Abs", ["i32n"], ["i32a"]),
        n("Add", ["i32a", "i32n"], ["iout"]),
        n("Add", ["f16back", "ge"], ["fout0"]),
        n("Sigmoid", ["fout0"], ["q"]),
        n("Sum", ["q", "fout0", "q"], ["fout"]),    # q: also the third input
    ]
    inits = [const("w", w), const("shape_t", np.array([cols, rows], np.int64)),
             const("shape_x", np.array([rows, cols], np.int64)),
             const("shape4", np.array([rows // 2, ch, 6, 4], np.int64)),
             const("zero", np.float32(0)),
             const("lo", np.float32(-1.5)), const("hi", np.float32(2.0)),
             const("slope", slope), const("two", np.float32(2)), const("three", np.float32(3)),
             const("lscale", lscale), const("lbias", lbias), const("bn_s", bn[0]),
             const("bn_b", bn[1]), const("bn_m", bn[2]), const("bn_v", bn_var),
             const("hundred", np.float32(100))]
    outs = [vi("g", F, [rows, cols]), vi("fout", F, [rows, cols]),
            vi("iout", TensorProto.INT32, [rows, cols])]
    g = helper.make_graph(nodes, "guards", [vi("x", F, [rows, cols])], outs, inits)

    def ref(x32):
        x = x32.astype(np.float64)
        r = np.maximum(x, 0)
        s = sigmoid(r)
        t = s + r
        u = np.tanh(t)
        u2 = u * u
        tvn = -t  # the view's values
        g_ = np.exp(u2)
        h = -g_
        k = u2.mean(axis=0, keepdims=True) - h
        c = w + k
        d = sigmoid(c)
        e = -c
        sm = c + d + e
        p0 = (c + d + sm) * tvn
        wh = np.where(p0 > 0, sm, -p0)
        cl = np.clip(wh, -1.5, 2.0)
        pr = np.where(cl < 0, cl * 0.25, cl)
        dv = pr ** 2 / 3
        sf0 = softmax(softmax(dv, -1), 0)
        ls = np.log(softmax(sf0, -1))
        hm = np.zeros_like(ls)
        hm[np.arange(rows), (-x).argmax(axis=-1)] = 1
        hl = hm + ls
        mu = hl.mean(axis=-1, keepdims=True)
        ln = (hl - mu) / np.sqrt(hl.var(axis=-1, keepdims=True) + 1e-5) * lscale + lbias
        l4 = ln.reshape(rows // 2, ch, 6, 4)
        cs = (slice(None), None, None)
        bnr = (l4 - bn[2][cs]) / np.sqrt(bn_var[cs] + 1e-5) * bn[0][cs] + bn[1][cs]
        m4 = bnr.mean(axis=(2, 3), keepdims=True)
        v4 = bnr.var(axis=(2, 3), keepdims=True)
        inr = (bnr - m4) / np.sqrt(v4 + 1e-5) * bn[0][cs] + bn[1][cs]
        in2 = inr.reshape(rows, cols)
        erf = np.vectorize(math.erf)
        ge = (0.5 * in2 * (1 + erf(in2 / math.sqrt(2)))).astype(np.float32)
        h16 = np.maximum(x32.astype(np.float16), 0)
        f16back = (h16 * h16).astype(np.float32)
        i32 = (x32 * np.float32(100)).astype(np.int32)
        iout = np.abs(-i32) + -i32
        fout0 = f16back + ge
        return {"g": g_.astype(np.float32), "fout": 2 * sigmoid(fout0) + fout0,
                "iout": iout.astype(np.int32)}

    x = rng.standard_normal((rows, cols)).astype(np.float32)
    return g, [({"x": x}, ref(x))]


def branch():
    n = helper.make_node
    rows, cols = 32, 64
    then_g = helper.make_graph([], "then", [], [vi("a", F, [rows, cols])])
    else_g = helper.make_graph([n("Mul", ["x", "two"], ["ex"])], "else", [],
                               [vi("ex", F, [rows, cols])])
    nodes = [
        n("Relu", ["x"], ["a"]),
        n("If", ["cond"], ["o"], then_branch=then_g, else_branch=else_g),
        n("Sigmoid", ["o"], ["so"]),               # may write over o: only if o is a
        n("Exp", ["x"], ["ex2"]),                  # takes and gives after it
        n("Tanh", ["ex2"], ["te"]),
        n("Add", ["so", "te"], ["y"]),
    ]
    g = helper.make_graph(nodes, "branch", [vi("x", F, [rows, cols]),
                                            vi("cond", TensorProto.BOOL, [])],
                          [vi("y", F, [rows, cols])], [const("two", np.float32(2))])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, cols)).astype(np.float32)

    def ref(x, cond):
        x = x.astype(np.float64)
        o = np.maximum(x, 0) if cond else x * 2
        return {"y": (sigmoid(o) + np.tanh(np.exp(x))).astype(np.float32)}

    return g, [({"x": x, "cond": np.array(c)}, ref(x, c)) for c in (True, False)]


def conv():
    n = helper.make_node
    rng = np.random.default_rng(4)
    cin, cout, hw = 16, 32, 12
    w = (rng.standard_normal((cout, cin, 1, 1)) * 0.2).astype(np.float32)
    nodes = [n("Conv", ["x", "w"], ["cv"]), n("Sigmoid", ["cv"], ["s"]),
             n("Mul", ["cv", "s"], ["y"])]
    g = helper.make_graph(nodes, "conv", [vi("x", F, [2, cin, hw, hw])],
                          [vi("y", F, [2, cout, hw, hw])], [const("w", w)])
    x = rng.standard_normal((2, cin, hw, hw)).astype(np.float32)
    cv = np.einsum("nchw,oc->nohw", x.astype(np.float64), w[:, :, 0, 0])
    return g, [({"x": x}, {"y": (cv * sigmoid(cv)).astype(np.float32)})]


MODELS = {"chain": chain, "guards": guards, "branch": branch, "conv": conv}


def main(out_dir):
    return memplan_models.main(out_dir, MODELS, OPSET)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
