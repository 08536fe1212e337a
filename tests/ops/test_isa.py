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

    layout_cases(feeds, op)

    ax13 = nh.from_array(np.array([1, 3], np.int64), "ax13")
    dt = {np.float32: T.FLOAT, np.float64: T.DOUBLE, np.int32: T.INT32, np.int64: T.INT64,
          np.float16: T.FLOAT16, np.int16: T.INT16, np.uint16: T.UINT16, np.int8: T.INT8}
    g = h.make_graph(
        nodes, "isa",
        [h.make_tensor_value_info(k, dt[v.dtype.type], v.shape) for k, v in feeds.items()],
        [h.make_tensor_value_info(k, dt[np.asarray(v).dtype.type] if np.asarray(v).dtype.type in dt
                                  else T.FLOAT, None) for k, v in refs.items()],
        [ax13])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    return m, feeds, refs


def layout_cases(feeds, op):
    """Transpose (register-transpose tiles of 2, 4 and 8 bytes, their edges)
    and Gather / GatherElements / GatherND (row copies, single-element
    gathers, negative indices) on odd shapes and several element types."""
    g = {
        "t17": f32(17, 33),
        "t1": f32(1, 1),
        "t357": f32(3, 5, 7),
        "tbig": f32(131, 67),                     # several 64-tiles, 16x16 blocks, edges
        "tnchw": f32(2, 19, 13, 37),              # NCHW -> NHWC
        "t64": rng.standard_normal((37, 70)),     # float64
        "ti64": rng.integers(-2**62, 2**62, (9, 23, 18), dtype=np.int64),
        "th": f32(45, 29).astype(np.float16),     # 2-byte
        "ts": rng.integers(-30000, 30000, (19, 8, 41), dtype=np.int16),
        "tb": rng.integers(-128, 127, (21, 13), dtype=np.int8),
        "emb": f32(97, 23),                       # rows of 92 bytes
        "wide": f32(13, 300),                     # rows of 1200 bytes (memcpy)
        "vec": f32(1001),
        "vec64": rng.standard_normal(777),
        "gi": rng.integers(-97, 97, (5, 11), dtype=np.int64),     # negative indices
        "gv": rng.integers(-1001, 1001, 301, dtype=np.int64),     # inner-1 gathers
        "gv32": rng.integers(-1001, 1001, (3, 37), dtype=np.int32),
        "gv7": rng.integers(-777, 777, 29, dtype=np.int64),
        "gw": rng.integers(-13, 13, 7, dtype=np.int64),
        "gs": rng.integers(-8, 8, 23, dtype=np.int64),
        "ge_last": rng.integers(-33, 33, (17, 40), dtype=np.int64),   # along the rows
        "ge_first": rng.integers(-9, 9, (5, 23, 18), dtype=np.int64),
        "ge_mid": rng.integers(-23, 23, (9, 4, 11), dtype=np.int64),
        "gnd": np.stack([rng.integers(-3, 3, (3, 7)), rng.integers(-5, 5, (3, 7))], -1),
        "gndb": rng.integers(-5, 5, (3, 4, 1), dtype=np.int64),
    }
    feeds.update(g)
    for name, src, perm in [
        ("tr_17x33", "t17", (1, 0)), ("tr_1x1", "t1", (1, 0)), ("tr_big", "tbig", (1, 0)),
        ("tr_nhwc", "tnchw", (0, 2, 3, 1)), ("tr_nchw", "tnchw", (0, 3, 1, 2)),
        ("tr_f64", "t64", (1, 0)), ("tr_i64", "ti64", (2, 0, 1)), ("tr_f16", "th", (1, 0)),
        ("tr_i16", "ts", (2, 1, 0)), ("tr_i8", "tb", (1, 0)),
    ] + [(f"tr_357_{''.join(map(str, p))}", "t357", p)
         for p in [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]]:
        op(name, "Transpose", [src], g[src].transpose(perm), perm=list(perm))
    take = np.take
    op("ga_rows", "Gather", ["emb", "gi"], take(g["emb"], g["gi"], axis=0), axis=0)
    op("ga_wide", "Gather", ["wide", "gw"], take(g["wide"], g["gw"], axis=0), axis=0)
    op("ga_wide_cols", "Gather", ["wide", "gs"], take(g["wide"], g["gs"], axis=1), axis=1)
    op("ga_vec", "Gather", ["vec", "gv"], take(g["vec"], g["gv"]), axis=0)
    op("ga_vec32", "Gather", ["vec", "gv32"], take(g["vec"], g["gv32"]), axis=0)
    op("ga_vec64", "Gather", ["vec64", "gv7"], take(g["vec64"], g["gv7"]), axis=0)
    op("ga_last", "Gather", ["emb", "gs"], take(g["emb"], g["gs"], axis=-1), axis=-1)
    op("ga_i16", "Gather", ["ts", "gs"], take(g["ts"], g["gs"], axis=1), axis=1)
    op("ga_i8_last", "Gather", ["tb", "gw"], take(g["tb"], g["gw"], axis=1), axis=1)
    op("ga_f16", "Gather", ["th", "gs"], take(g["th"], g["gs"], axis=0), axis=0)
    op("ga_i64_last", "Gather", ["ti64", "gs"], take(g["ti64"], g["gs"], axis=2), axis=2)
    x, gl, gf, gm = g["t17"], g["ge_last"], g["ge_first"], g["ge_mid"]
    op("elem_last", "GatherElements", ["t17", "ge_last"],
       np.take_along_axis(x, gl % 33, axis=1), axis=1)
    x = g["ti64"]
    op("elem_first", "GatherElements", ["ti64", "ge_first"],
       np.take_along_axis(x, gf % 9, axis=0), axis=0)
    op("elem_mid", "GatherElements", ["ti64", "ge_mid"],
       np.take_along_axis(x[:, :, :11], gm % 23, axis=1), axis=1)
    x, nd, ndb = g["t357"], g["gnd"], g["gndb"]
    op("nd", "GatherND", ["t357", "gnd"], x[nd[..., 0] % 3, nd[..., 1] % 5])
    op("nd_b1", "GatherND", ["t357", "gndb"],
       np.stack([x[k][ndb[k, :, 0] % 5] for k in range(3)]), batch_dims=1)


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
