"""The vectorised kernels (elementwise with broadcasting, reductions,
Softmax, Gather, Transpose, the GEMM) on odd shapes, run under each
instruction-set level tern can pick at run time (TERN_ISA=generic, avx2,
avx512; a level the CPU lacks is capped to what it has) and checked against
numpy, and the vector levels against the portable one.

One model holds every case as a separate output, so each level is one
`tern run`."""
import math
import os
import subprocess

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

TERN = os.environ.get("TERN_BIN", "build/tern")
rng = np.random.default_rng(7)
erf = np.vectorize(math.erf)


def f32(*s):
    return rng.standard_normal(s).astype(np.float32)


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def build():
    """(model, feeds, {output: reference})"""
    a = f32(3, 5, 7, 33)            # odd sizes everywhere
    feeds = {
        "a": a,
        "b": f32(5, 1, 33),         # broadcast in the middle
        "c": f32(33),               # a row vector
        "d": f32(3, 1, 7, 1),       # broadcast innermost
        "s": f32(1),                # a scalar
        "p": (np.abs(f32(3, 5, 7, 33)) + 0.5).astype(np.float32),
        "q": rng.standard_normal((17, 1001)).astype(np.float64),
        "r": rng.standard_normal((17, 1)).astype(np.float64),
        "i": rng.integers(-1000, 1000, (4, 9, 131), dtype=np.int32),
        "j": rng.integers(-1000, 1000, (9, 1), dtype=np.int32),
        "n": np.array([[0, 4, 2], [3, 3, 1]], np.int64),
    }
    x, b, c, d, s, p, q, r, i, j = (feeds[k] for k in "abcdspqrij")
    nodes, refs = [], {}

    def op(name, op_type, ins, ref, **attrs):
        nodes.append(h.make_node(op_type, ins, [name], **attrs))
        refs[name] = ref

    op("add_b", "Add", ["a", "b"], x + b)
    op("sub_c", "Sub", ["a", "c"], x - c)
    op("mul_d", "Mul", ["a", "d"], x * d)
    op("div_p", "Div", ["a", "p"], x / p)
    op("add_s", "Add", ["s", "a"], s + x)
    op("max_b", "Max", ["a", "b"], np.maximum(x, b))
    op("min_d", "Min", ["a", "d"], np.minimum(x, d))
    op("pow_p", "Pow", ["p", "d"], np.power(p, d))
    op("relu", "Relu", ["a"], np.maximum(x, 0))
    op("leaky", "LeakyRelu", ["a"], np.where(x > 0, x, 0.1 * x), alpha=0.1)
    op("sigmoid", "Sigmoid", ["a"], 1 / (1 + np.exp(-x)))
    op("tanh", "Tanh", ["a"], np.tanh(x))
    op("exp", "Exp", ["a"], np.exp(x))
    op("log", "Log", ["p"], np.log(p))
    op("sqrt", "Sqrt", ["p"], np.sqrt(p))
    op("erf", "Erf", ["a"], erf(x).astype(np.float32))
    op("abs", "Abs", ["a"], np.abs(x))
    op("neg", "Neg", ["a"], -x)
    op("softmax_last", "Softmax", ["a"], softmax(x, -1), axis=-1)
    op("softmax_ch", "Softmax", ["a"], softmax(x, 1), axis=1)
    op("logsoftmax", "LogSoftmax", ["a"], np.log(softmax(x, -1)), axis=-1)
    op("sum_13", "ReduceSum", ["a", "ax13"], x.sum(axis=(1, 3), keepdims=True))
    op("mean_0", "ReduceMean", ["a"], x.mean(axis=0), axes=[0], keepdims=0)
    op("max_last", "ReduceMax", ["a"], x.max(axis=-1, keepdims=True), axes=[-1])
    op("l2_2", "ReduceL2", ["a"], np.sqrt((x.astype(np.float64) ** 2).sum(axis=2)), axes=[2],
       keepdims=0)
    op("gather1", "Gather", ["a", "n"], np.take(x, feeds["n"], axis=1), axis=1)
    op("transpose", "Transpose", ["a"], x.transpose(2, 0, 3, 1), perm=[2, 0, 3, 1])
    op("add_f64", "Add", ["q", "r"], q + r)
    op("mul_f64", "Mul", ["q", "q"], q * q)
    op("add_i32", "Add", ["i", "j"], i + j)
    op("mul_i32", "Mul", ["i", "j"], i * j)
    op("softmax_f64", "Softmax", ["q"], softmax(q, -1), axis=-1)

    ax13 = nh.from_array(np.array([1, 3], np.int64), "ax13")
    dt = {np.float32: T.FLOAT, np.float64: T.DOUBLE, np.int32: T.INT32, np.int64: T.INT64}
    g = h.make_graph(
        nodes, "isa",
        [h.make_tensor_value_info(k, dt[v.dtype.type], v.shape) for k, v in feeds.items()],
        [h.make_tensor_value_info(k, dt[np.asarray(v).dtype.type] if np.asarray(v).dtype.type in dt
                                  else T.FLOAT, None) for k, v in refs.items()],
        [ax13])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    return m, feeds, refs


def run_level(tmp, level, feeds):
    out = tmp / level
    out.mkdir()
    args = [TERN, "run", str(tmp / "isa.onnx"), "--output-dir", str(out), "--threads", "2"]
    for k in feeds:
        args += ["--input", f"{k}={tmp / (k + '.npy')}"]
    env = dict(os.environ, TERN_ISA=level)
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return out


def test_levels_against_numpy(tmp_path):
    m, feeds, refs = build()
    onnx.save(m, tmp_path / "isa.onnx")
    for k, v in feeds.items():
        np.save(tmp_path / (k + ".npy"), v)
    got = {lv: run_level(tmp_path, lv, feeds) for lv in ("generic", "avx2", "avx512")}
    fails = []
    for name, ref in refs.items():
        base = np.load(got["generic"] / (name + ".npy"))
        for lv, d in got.items():
            y = np.load(d / (name + ".npy"))
            if y.shape != np.shape(ref):
                fails.append(f"{lv} {name}: shape {y.shape} vs {np.shape(ref)}")
                continue
            if y.dtype.kind in "iu":
                if not np.array_equal(y, ref):
                    fails.append(f"{lv} {name}: integers differ")
                continue
            ref64 = np.asarray(ref, np.float64)
            tol = 1e-12 if y.dtype == np.float64 else 3e-6
            err = np.abs(y - ref64) / (np.abs(ref64) + 1e-3)
            if err.max() > tol * 10:
                fails.append(f"{lv} {name}: max rel err {err.max():.2e} against numpy")
            # the vector kernels against the portable ones: a few ulps at most
            diff = np.abs(y.astype(np.float64) - base) / (np.abs(base.astype(np.float64)) + 1e-3)
            if diff.max() > tol:
                fails.append(f"{lv} {name}: differs from generic by {diff.max():.2e}")
    assert not fails, "\n".join(fails)
