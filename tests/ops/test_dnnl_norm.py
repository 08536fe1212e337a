"""float32 LayerNormalization and Softmax through oneDNN (src/ops/dnnl_norm.c)
against numpy in float64, and against tern's own kernels (TERN_DNNL=0),
through `tern run`.

ONEDNN_VERBOSE=1 makes oneDNN print a line per primitive it runs: the tests
count them to prove which path ran. The shapes oneDNN takes (LayerNorm over
the trailing dims with full Scale and B, or no B; Softmax over the last axis)
must print one line per node and run; the ones it must leave to tern's
kernels (a broadcast Scale, the mean / inverse-deviation outputs, a softmax
axis with dims after it, rows shorter than 128, LogSoftmax, float64, more
than two intra-op threads) must print none and still be right. Chains put the ops behind other kernels so that their input buffer
is one the memory plan may hand to the output (in-place runs)."""
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

TERN = os.environ.get("TERN_BIN", "build/tern")
rng = np.random.default_rng(11)


def f32(*s, scale=3.0):
    return (rng.standard_normal(s) * scale).astype(np.float32)


def run_model(tmp, name, nodes, inits, feeds, outputs, threads=1, dnnl="1", opset=17,
              out_types=None):
    """Runs the model in tern with TERN_DNNL=dnnl; returns ({output: array},
    {primitive kind: number of oneDNN executions})."""
    out_types = out_types or {}
    g = h.make_graph(nodes, name,
                     [h.make_tensor_value_info(k, T.DOUBLE if v.dtype == np.float64 else T.FLOAT,
                                               None) for k, v in feeds.items()],
                     [h.make_tensor_value_info(o, out_types.get(o, T.FLOAT), None)
                      for o in outputs],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    path = f"{tmp}/{name}.onnx"
    onnx.save(m, path)
    out = f"{tmp}/{name}_out_{threads}_{dnnl}"
    os.makedirs(out, exist_ok=True)
    args = [TERN, "run", path, "--output-dir", out, "--threads", str(threads), "--repeat", "2"]
    for k, v in feeds.items():
        np.save(f"{tmp}/{name}_{k}.npy", v)
        args += ["--input", f"{k}={tmp}/{name}_{k}.npy"]
    env = dict(os.environ, ONEDNN_VERBOSE="1", TERN_DNNL=dnnl)
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    kinds = {}
    for line in r.stdout.splitlines():
        if line.startswith("onednn_verbose,exec,cpu,"):
            k = line.split(",")[3]
            kinds[k] = kinds.get(k, 0) + 1
    return {o: np.load(f"{out}/{o}.npy") for o in outputs}, kinds


def ln_ref(x, scale, bias, axis, eps):
    x = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(v + eps) * scale.astype(np.float64)
    return y + bias.astype(np.float64) if bias is not None else y


def softmax_ref(x, axis=-1):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def close(got, want, tol=2e-5):
    assert got.shape == want.shape
    assert got.dtype in (np.float32, np.float64)
    err = np.abs(got.astype(np.float64) - want).max()
    assert err <= tol * max(1.0, np.abs(want).max()), err


# (x shape, axis, bias, epsilon): BERT's rows (hidden 768 and 128), a rank-3
# input normalised over its last axis and over its last two, odd sizes.
LN_CASES = [((128, 768), -1, True, 1e-12), ((2, 128, 128), -1, True, 1e-12),
            ((4, 6, 10), 1, True, 1e-5), ((3, 7, 33), -1, False, 1e-5), ((1, 1), -1, True, 1e-5)]


@pytest.mark.parametrize("threads", [1, 2])
def test_layernorm_onednn(tmp_path, threads):
    nodes, inits, feeds, outs, want = [], {}, {}, [], {}
    for i, (shape, axis, has_b, eps) in enumerate(LN_CASES):
        x = f32(*shape)
        norm = shape[axis % len(shape):]
        s = (rng.random(norm) + 0.5).astype(np.float32)
        b = f32(*norm, scale=0.5) if has_b else None
        inits[f"s{i}"] = s
        ins = [f"x{i}", f"s{i}"]
        if has_b:
            inits[f"b{i}"] = b
            ins.append(f"b{i}")
        nodes.append(h.make_node("LayerNormalization", ins, [f"y{i}"], axis=axis, epsilon=eps))
        feeds[f"x{i}"] = x
        outs.append(f"y{i}")
        want[f"y{i}"] = ln_ref(x, s, b, axis, eps)
    got, kinds = run_model(tmp_path, "ln", nodes, inits, feeds, outs, threads=threads)
    # 3 runs (one warm-up, --repeat 2) of every node
    assert kinds.get("layer_normalization") == 3 * len(LN_CASES), kinds
    mine, _ = run_model(tmp_path, "ln", nodes, inits, feeds, outs, threads=threads, dnnl="0")
    for o in outs:
        close(got[o], want[o])
        close(mine[o], want[o])


def test_layernorm_portable_cases(tmp_path):
    """A broadcast Scale, the Mean / InvStdDev outputs and float64 stay
    with tern's kernel: no oneDNN primitive runs, the results are right."""
    x, x64 = f32(8, 32), f32(4, 16).astype(np.float64)
    s1 = np.array([1.5], np.float32)
    s, b = (rng.random(32) + 0.5).astype(np.float32), f32(32, scale=0.5)
    nodes = [h.make_node("LayerNormalization", ["x", "s1"], ["y0"], epsilon=1e-5),
             h.make_node("LayerNormalization", ["x", "s", "b"], ["y1", "mean", "inv"],
                         epsilon=1e-5),
             h.make_node("LayerNormalization", ["x64", "s64"], ["y2"], epsilon=1e-5)]
    inits = {"s1": s1, "s": s, "b": b, "s64": np.ones(16, np.float64)}
    got, kinds = run_model(tmp_path, "ln_portable", nodes, inits, {"x": x, "x64": x64},
                           ["y0", "y1", "mean", "inv", "y2"], out_types={"y2": T.DOUBLE})
    assert "layer_normalization" not in kinds, kinds
    close(got["y0"], ln_ref(x, s1, None, -1, 1e-5))
    close(got["y1"], ln_ref(x, s, b, -1, 1e-5))
    xd = x.astype(np.float64)
    close(got["mean"], xd.mean(axis=1, keepdims=True))
    close(got["inv"], 1 / np.sqrt(xd.var(axis=1, keepdims=True) + 1e-5), tol=1e-4)
    close(got["y2"], ln_ref(x64, np.ones(16), None, -1, 1e-5))


# (x shape, axis, opset): attention scores [b, heads, s, s], logits, a 2-D
# coercion of opset 11 (softmax over everything from axis 1).
SM_CASES = [((1, 2, 128, 128), -1, 17), ((2, 12, 16, 128), 3, 17), ((1, 1000), 1, 17),
            ((3, 4, 64), 1, 11)]


@pytest.mark.parametrize("threads", [1, 2])
def test_softmax_onednn(tmp_path, threads):
    for i, (shape, axis, opset) in enumerate(SM_CASES):
        x = f32(*shape, scale=4.0)
        nodes = [h.make_node("Softmax", ["x"], ["y"], axis=axis)]
        got, kinds = run_model(tmp_path, f"sm{i}", nodes, {}, {"x": x}, ["y"], threads=threads,
                               opset=opset)
        assert kinds.get("softmax_v2") == 3, (shape, kinds)
        if opset < 13:
            want = softmax_ref(x.reshape(shape[0], -1)).reshape(shape)
        else:
            want = softmax_ref(x, axis)
        close(got["y"], want)
        mine, k0 = run_model(tmp_path, f"sm{i}", nodes, {}, {"x": x}, ["y"], threads=threads,
                             dnnl="0", opset=opset)
        assert not k0
        close(mine["y"], want)


def test_softmax_portable_cases(tmp_path):
    """A softmax axis with dims after it, rows shorter than 128 (an MLP's
    10 classes), LogSoftmax and float64 stay with tern's kernels."""
    x, x64 = f32(2, 5, 7, scale=4.0), f32(3, 9).astype(np.float64)
    x10 = f32(32, 10, scale=4.0)
    nodes = [h.make_node("Softmax", ["x"], ["y0"], axis=1),
             h.make_node("LogSoftmax", ["x"], ["y1"], axis=-1),
             h.make_node("Softmax", ["x64"], ["y2"], axis=-1),
             h.make_node("Softmax", ["x10"], ["y3"], axis=-1)]
    got, kinds = run_model(tmp_path, "sm_portable", nodes, {}, {"x": x, "x64": x64, "x10": x10},
                           ["y0", "y1", "y2", "y3"], out_types={"y2": T.DOUBLE})
    assert "softmax_v2" not in kinds, kinds
    close(got["y0"], softmax_ref(x, 1))
    close(got["y1"], np.log(softmax_ref(x, -1)))
    close(got["y2"], softmax_ref(x64, -1))
    close(got["y3"], softmax_ref(x10, -1))


def test_more_threads_stay_portable(tmp_path):
    """With more than two intra-op threads tern's row kernels run (oneDNN
    runs these on one thread only)."""
    x = f32(4, 128, scale=4.0)
    s, b = (rng.random(128) + 0.5).astype(np.float32), f32(128, scale=0.5)
    nodes = [h.make_node("LayerNormalization", ["x", "s", "b"], ["y0"], epsilon=1e-5),
             h.make_node("Softmax", ["x"], ["y1"], axis=-1)]
    got, kinds = run_model(tmp_path, "threads3", nodes, {"s": s, "b": b}, {"x": x},
                           ["y0", "y1"], threads=3)
    assert not kinds, kinds
    close(got["y0"], ln_ref(x, s, b, -1, 1e-5))
    close(got["y1"], softmax_ref(x, -1))


@pytest.mark.parametrize("threads", [1, 2])
def test_chain_in_place(tmp_path, threads):
    """Relu -> LayerNorm -> MatMul -> Softmax -> Add: each op reads a buffer
    nothing else reads again, which the memory plan may give to its output;
    oneDNN then runs in place."""
    x = f32(2, 64, 96)
    s, b = (rng.random(96) + 0.5).astype(np.float32), f32(96, scale=0.5)
    w = f32(96, 128, scale=0.2)
    nodes = [h.make_node("Relu", ["x"], ["r"]),
             h.make_node("LayerNormalization", ["r", "s", "b"], ["n"], epsilon=1e-12),
             h.make_node("MatMul", ["n", "w"], ["m"]),
             h.make_node("Softmax", ["m"], ["p"], axis=-1),
             h.make_node("Add", ["p", "p"], ["y"])]
    got, kinds = run_model(tmp_path, "chain", nodes, {"s": s, "b": b, "w": w}, {"x": x}, ["y"],
                           threads=threads)
    assert kinds.get("layer_normalization") == 3 and kinds.get("softmax_v2") == 3, kinds
    n = ln_ref(np.maximum(x, 0), s, b, -1, 1e-12)
    want = 2 * softmax_ref(n @ w.astype(np.float64))
    close(got["y"], want, tol=1e-4)
