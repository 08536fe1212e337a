"""The load-time graph passes (src/graph/passes*.c), one small graph per pass.

Each graph is made here with onnx.helper and run through `tern run` twice,
with the passes (the default) and with --no-optimize; both results must match
an independent reference (numpy or torch). `tern check --optimized` then
shows the ops left after the passes and what each pass did, which proves the
pass fired (or, for the cases that must be left alone, that it did not)."""
import math
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

TERN = os.environ.get("TERN_BIN", "build/tern")
rng = np.random.default_rng(0)
torch.manual_seed(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def make(tmp, name, nodes, inputs, outputs, inits=None, opset=13, extra_inputs=()):
    """inputs: {name: array or (dtype, shape)}; outputs: names (types left to tern)."""
    vin = []
    for k, v in inputs.items():
        if isinstance(v, np.ndarray):
            vin.append(h.make_tensor_value_info(k, onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[v.dtype],
                                                v.shape))
        else:
            vin.append(h.make_tensor_value_info(k, v[0], v[1]))
    vin += list(extra_inputs)
    vout = [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs]
    g = h.make_graph(nodes, name, vin, vout,
                     [nh.from_array(v, k) for k, v in (inits or {}).items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    path = os.path.join(str(tmp), name + ".onnx")
    onnx.save(m, path)
    return path


def run(path, feeds, optimize=True, threads=1):
    out = path[:-5] + ("_opt" if optimize else "_noopt")
    os.makedirs(out, exist_ok=True)
    args = [TERN, "run", path, "--output-dir", out, "--threads", str(threads)]
    if not optimize:
        args.append("--no-optimize")
    for k, v in feeds.items():
        f = f"{out}/in_{k}.npy"
        np.save(f, v)
        args += ["--input", f"{k}={f}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Sanitizer" not in r.stderr, r.stderr
    res = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(.*)\.npy: ", line)
        if m:
            res[os.path.basename(m.group(1))] = np.load(m.group(1) + ".npy")
    return res


def optimized(path, env=None):
    """(ops after the passes as {"[domain.]Op": count}, rewrites {kind: n})."""
    r = subprocess.run([TERN, "check", path, "--optimized"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ops, rewrites, on = {}, {}, False
    for line in r.stdout.splitlines():
        if line.startswith("rewrites:"):
            for kv in line.split()[1:]:
                k, v = kv.split("=")
                rewrites[k] = int(v)
        elif line == "optimized ops:":
            on = True
        elif on and line.startswith("  "):
            name, count = line.split()
            ops[name] = int(count[1:])
    return ops, rewrites


def check(path, feeds, refs, tol=1e-5, threads=1):
    """Runs with and without the passes; every output within tol (relative
    to the reference's largest magnitude) of its reference."""
    for opt in (True, False):
        got = run(path, feeds, opt, threads)
        for name, ref in refs.items():
            y = got[name]
            assert y.shape == ref.shape, f"{name} (optimize={opt}): {y.shape} vs {ref.shape}"
            err = np.max(np.abs(y.astype(np.float64) - ref)) / max(1.0, np.max(np.abs(ref)))
            assert err <= tol, f"{name} (optimize={opt}): error {err:.3g}"


def has_op(op):
    r = subprocess.run([TERN, "ops"], capture_output=True, text=True)
    return any(line.split()[:2] == ["com.tern", op] for line in r.stdout.splitlines())


# ---- 1. Identity, Dropout, no-ops, dead nodes -------------------------------------


def test_identity_dropout_noops_dead(tmp_path):
    x = f32(2, 3, 4)
    nodes = [
        h.make_node("Identity", ["X"], ["a"]),
        h.make_node("Dropout", ["a"], ["b"], ratio=0.3),
        h.make_node("Reshape", ["b", "same"], ["c"]),
        h.make_node("Transpose", ["c"], ["d"], perm=[0, 1, 2]),
        h.make_node("Cast", ["d"], ["e"], to=T.FLOAT),
        h.make_node("Relu", ["e"], ["Y"]),
        h.make_node("Exp", ["X"], ["unused"]),      # nothing reads it: dead
        h.make_node("Identity", ["X"], ["Y2"]),     # a graph output: stays
    ]
    p = make(tmp_path, "noops", nodes, {"X": x}, ["Y", "Y2"],
             {"same": np.array([2, 3, 4], np.int64)})
    check(p, {"X": x}, {"Y": np.maximum(x, 0), "Y2": x})
    ops, rw = optimized(p)
    assert ops == {"Relu": 1, "Identity": 1}, ops
    assert rw["identity"] == 5 and rw["dead"] == 1, rw


def test_dropout_in_training_mode_stays(tmp_path):
    x = f32(4, 5)
    nodes = [h.make_node("Dropout", ["X", "r", "t"], ["Y"], seed=3)]
    p = make(tmp_path, "dropout_train", nodes, {"X": x}, ["Y"],
             {"r": np.array(0.5, np.float32), "t": np.array(True)})
    a, b = run(p, {"X": x})["Y"], run(p, {"X": x}, optimize=False)["Y"]
    np.testing.assert_array_equal(a, b)
    assert np.count_nonzero(a == 0) > 0  # it dropped something
    assert optimized(p)[0] == {"Dropout": 1}


def test_noop_reshape_only_when_shape_is_known(tmp_path):
    # X's dims are symbolic: Reshape to [2, 6] is not provably a no-op
    nodes = [h.make_node("Reshape", ["X", "s"], ["Y"])]
    p = make(tmp_path, "reshape_sym", nodes, {"X": (T.FLOAT, ["a", "b"])}, ["Y"],
             {"s": np.array([2, 6], np.int64)})
    x = f32(3, 4)
    check(p, {"X": x}, {"Y": x.reshape(2, 6)})
    assert optimized(p)[0] == {"Reshape": 1}


# ---- 2. constant folding ----------------------------------------------------------


def test_constant_folding(tmp_path):
    x = f32(2, 3, 4)
    c1 = h.make_node("Constant", [], ["k"], value=nh.from_array(np.array([2.0], np.float32)))
    nodes = [
        c1,
        h.make_node("Shape", ["X"], ["shp"]),                       # static: [2,3,4]
        h.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        h.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        h.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        h.make_node("Reshape", ["X", "newshape"], ["xr"]),         # [2, 12]
        h.make_node("Cast", ["wi"], ["wf"], to=T.FLOAT),           # int initializer
        h.make_node("Add", ["wf", "k"], ["w2"]),
        h.make_node("Mul", ["xr", "w2"], ["Y"]),
    ]
    wi = rng.integers(-3, 4, size=(12,)).astype(np.int32)
    p = make(tmp_path, "fold", nodes, {"X": x}, ["Y"],
             {"zero": np.array(0, np.int64), "ax0": np.array([0], np.int64),
              "minus1": np.array([-1], np.int64), "wi": wi})
    check(p, {"X": x}, {"Y": x.reshape(2, 12) * (wi.astype(np.float32) + 2.0)})
    ops, rw = optimized(p)
    assert ops == {"Reshape": 1, "Mul": 1}, ops
    assert rw["fold"] == 7, rw


def test_overridable_initializer_is_not_folded(tmp_path):
    # B is an initializer and a graph input: a caller may replace it
    x, b, b2 = f32(3), f32(3), f32(3)
    nodes = [h.make_node("Neg", ["B"], ["nb"]), h.make_node("Add", ["X", "nb"], ["Y"])]
    p = make(tmp_path, "override", nodes, {"X": x}, ["Y"], {"B": b},
             extra_inputs=[h.make_tensor_value_info("B", T.FLOAT, [3])])
    check(p, {"X": x}, {"Y": x - b})
    check(p, {"X": x, "B": b2}, {"Y": x - b2})
    assert "Neg" in optimized(p)[0]


# ---- 3. Conv + BatchNormalization -------------------------------------------------


@pytest.mark.parametrize("group,bias", [(1, True), (1, False), (4, True)])
def test_conv_batchnorm(tmp_path, group, bias):
    x, w = f32(2, 8, 9, 9), f32(8, 8 // group, 3, 3)
    b = f32(8)
    scale, shift = rng.random(8).astype(np.float32) + 0.5, f32(8)
    mean, var = f32(8), rng.random(8).astype(np.float32) + 0.1
    ins = ["X", "W", "B"] if bias else ["X", "W"]
    nodes = [h.make_node("Conv", ins, ["c"], pads=[1, 1, 1, 1], group=group),
             h.make_node("BatchNormalization", ["c", "s", "sh", "m", "v"], ["Y"], epsilon=1e-3)]
    inits = {"W": w, "s": scale, "sh": shift, "m": mean, "v": var}
    if bias:
        inits["B"] = b
    p = make(tmp_path, f"convbn_{group}_{bias}", nodes, {"X": x}, ["Y"], inits)
    t = torch.nn.functional
    ref = t.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                   torch.from_numpy(b) if bias else None, padding=1, groups=group)
    ref = t.batch_norm(ref, torch.from_numpy(mean), torch.from_numpy(var), torch.from_numpy(scale),
                       torch.from_numpy(shift), False, 0.0, 1e-3).numpy()
    check(p, {"X": x}, {"Y": ref}, tol=1e-4)
    ops, rw = optimized(p)
    assert ops == {"Conv": 1}, ops
    assert rw["conv_bn"] == 1


# ---- 4. Conv + residual + activation -> FusedConv ---------------------------------

CONV_ACTS = {
    "Relu": (lambda y: torch.relu(y), lambda: ([h.make_node("Relu", ["s"], ["Y"])], {})),
    "Clip": (lambda y: torch.clamp(y, 0.0, 6.0),
             lambda: ([h.make_node("Clip", ["s", "lo", "hi"], ["Y"])],
                      {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)})),
    "LeakyRelu": (lambda y: torch.nn.functional.leaky_relu(y, 0.2),
                  lambda: ([h.make_node("LeakyRelu", ["s"], ["Y"], alpha=0.2)], {})),
    "Sigmoid": (torch.sigmoid, lambda: ([h.make_node("Sigmoid", ["s"], ["Y"])], {})),
    "none": (lambda y: y, lambda: ([], {})),
}


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("act", list(CONV_ACTS))
def test_fused_conv(tmp_path, act, residual):
    if not has_op("FusedConv"):
        pytest.skip("com.tern FusedConv is not registered")
    if act == "none" and not residual:
        pytest.skip("a bare Conv is not fused")
    x, w, b, z = f32(2, 6, 10, 10), f32(8, 6, 3, 3), f32(8), f32(2, 8, 10, 10)
    nodes = [h.make_node("Conv", ["X", "W", "B"], ["c"], pads=[1, 1, 1, 1])]
    s = "Y" if act == "none" else "s"
    nodes.append(h.make_node("Add", ["Z", "c"], [s]) if residual else
                 h.make_node("Identity", ["c"], [s]))
    fn, mk = CONV_ACTS[act]
    an, ainits = mk()
    nodes += an
    inputs = {"X": x, "Z": z} if residual else {"X": x}
    p = make(tmp_path, f"fconv_{act}_{residual}", nodes, inputs, ["Y"], {"W": w, "B": b, **ainits})
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                   padding=1)
    if residual:
        y = y + torch.from_numpy(z)
    check(p, inputs, {"Y": fn(y).numpy()}, tol=1e-4)
    ops, rw = optimized(p)
    assert ops == {"com.tern.FusedConv": 1}, ops
    assert rw["fused_conv"] == 1


def test_clip_with_runtime_bounds_is_not_fused(tmp_path):
    x, w = f32(1, 3, 6, 6), f32(4, 3, 3, 3)
    nodes = [h.make_node("Conv", ["X", "W"], ["c"]), h.make_node("Clip", ["c", "lo"], ["Y"])]
    p = make(tmp_path, "clip_rt", nodes, {"X": x, "lo": np.array(0.1, np.float32)}, ["Y"],
             {"W": w})
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    check(p, {"X": x, "lo": np.array(0.1, np.float32)}, {"Y": np.maximum(y, 0.1)}, tol=1e-4)
    assert "Clip" in optimized(p)[0]


# ---- 5. MatMul + bias -> Gemm, + activation -> FusedGemm / FusedMatMul -----------

def gelu_nodes(x, y, prefix):
    """torch's exact-GELU export: Div sqrt2, Erf, Add 1, Mul x, Mul 0.5."""
    return [h.make_node("Div", [x, "sqrt2"], [prefix + "d"]),
            h.make_node("Erf", [prefix + "d"], [prefix + "e"]),
            h.make_node("Add", [prefix + "e", "one"], [prefix + "p"]),
            h.make_node("Mul", [x, prefix + "p"], [prefix + "m"]),
            h.make_node("Mul", [prefix + "m", "half"], [y])]


GELU_INITS = {"sqrt2": np.array(math.sqrt(2), np.float32), "one": np.array(1.0, np.float32),
              "half": np.array(0.5, np.float32)}


def gelu_ref(y):
    return torch.nn.functional.gelu(torch.from_numpy(y)).numpy()


@pytest.mark.parametrize("m,k,n", [(2, 5, 3), (64, 96, 80), (1, 300, 70)])
def test_matmul_bias_to_gemm(tmp_path, m, k, n):
    a, b, bias = f32(m, k), f32(k, n), f32(n)
    nodes = [h.make_node("MatMul", ["A", "Bw"], ["mm"]), h.make_node("Add", ["bias", "mm"], ["Y"])]
    p = make(tmp_path, f"mm_gemm_{m}", nodes, {"A": a}, ["Y"], {"Bw": b, "bias": bias})
    check(p, {"A": a}, {"Y": a.astype(np.float64) @ b + bias})
    ops, rw = optimized(p)
    assert ops == {"Gemm": 1}, ops
    assert rw["gemm"] == 1


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "HardSigmoid", "Clip", "Gelu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_bias_act_2d_to_fused_gemm(tmp_path, act, threads):
    a, b, bias = f32(40, 64), f32(64, 50), f32(1, 50)
    y = a.astype(np.float64) @ b + bias
    inits = {"Bw": b, "bias": bias}
    nodes = [h.make_node("MatMul", ["A", "Bw"], ["mm"]), h.make_node("Add", ["mm", "bias"], ["s"])]
    if act == "Gelu":
        nodes += gelu_nodes("s", "Y", "g")
        inits.update(GELU_INITS)
        ref = gelu_ref(y)
    elif act == "Clip":
        nodes.append(h.make_node("Clip", ["s", "lo", "hi"], ["Y"]))
        inits.update({"lo": np.array(-0.5, np.float32), "hi": np.array(1.5, np.float32)})
        ref = np.clip(y, -0.5, 1.5)
    elif act == "HardSigmoid":
        nodes.append(h.make_node("HardSigmoid", ["s"], ["Y"], alpha=0.3, beta=0.4))
        ref = np.clip(0.3 * y + 0.4, 0, 1)
    elif act == "LeakyRelu":
        nodes.append(h.make_node("LeakyRelu", ["s"], ["Y"]))
        ref = np.where(y < 0, 0.01 * y, y)
    else:
        nodes.append(h.make_node("Relu", ["s"], ["Y"]))
        ref = np.maximum(y, 0)
    p = make(tmp_path, f"fgemm_{act}_{threads}", nodes, {"A": a}, ["Y"], inits)
    check(p, {"A": a}, {"Y": ref}, threads=threads)
    ops, rw = optimized(p)
    assert ops == {"com.tern.FusedGemm": 1}, ops


def test_gemm_act_to_fused_gemm(tmp_path):
    # transB, alpha, beta and a column C broadcast down the rows
    a, b, c = f32(30, 20), f32(25, 20), f32(30, 1)
    nodes = [h.make_node("Gemm", ["A", "Bw", "C"], ["g"], transB=1, alpha=0.7, beta=1.5),
             h.make_node("Relu", ["g"], ["Y"])]
    p = make(tmp_path, "gemm_relu", nodes, {"A": a}, ["Y"], {"Bw": b, "C": c})
    check(p, {"A": a}, {"Y": np.maximum(0.7 * (a.astype(np.float64) @ b.T) + 1.5 * c, 0)})
    assert optimized(p)[0] == {"com.tern.FusedGemm": 1}


@pytest.mark.parametrize("shape", [(2, 48, 64, 96), (3, 5, 520, 300), (1, 1, 7, 5)])
@pytest.mark.parametrize("const_b", [True, False])
def test_matmul_3d_bias_gelu_to_fused_matmul(tmp_path, const_b, shape):
    bt, m, k, n = shape
    a, b, bias = f32(bt, m, k), f32(k, n), f32(n)
    nodes = [h.make_node("MatMul", ["A", "Bw"], ["mm"]),
             h.make_node("Add", ["bias", "mm"], ["s"])] + gelu_nodes("s", "Y", "g")
    inits = {"bias": bias, **GELU_INITS}
    feeds = {"A": a}
    if const_b:
        inits["Bw"] = b
    else:
        feeds["Bw"] = b
    p = make(tmp_path, f"fmm_{const_b}_{k}", nodes, feeds, ["Y"], inits)
    check(p, feeds, {"Y": gelu_ref((a.astype(np.float64) @ b + bias).astype(np.float32))})
    ops, rw = optimized(p)
    assert ops == {"com.tern.FusedMatMul": 1}, ops
    assert rw["gelu"] == 1 and rw["fused_matmul"] == 1, rw


def test_bias_on_the_wrong_axis_is_not_fused(tmp_path):
    a, b, bias = f32(6, 4), f32(4, 6), f32(6, 1)   # broadcasts over rows, not columns
    nodes = [h.make_node("MatMul", ["A", "Bw"], ["mm"]), h.make_node("Add", ["mm", "bias"], ["Y"])]
    p = make(tmp_path, "wrong_axis", nodes, {"A": a}, ["Y"], {"Bw": b, "bias": bias})
    check(p, {"A": a}, {"Y": a.astype(np.float64) @ b + bias})
    assert optimized(p)[0] == {"MatMul": 1, "Add": 1}


# ---- 6. LayerNorm and GELU patterns -----------------------------------------------


def layernorm_nodes(x, y, with_affine=True):
    n = [h.make_node("ReduceMean", [x], ["mu"], axes=[-1]),
         h.make_node("Sub", [x, "mu"], ["d"]),
         h.make_node("Pow", ["d", "two"], ["d2"]),
         h.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
         h.make_node("Add", ["var", "eps"], ["ve"]),
         h.make_node("Sqrt", ["ve"], ["sd"]),
         h.make_node("Div", ["d", "sd"], ["nrm" if with_affine else y])]
    if with_affine:
        n += [h.make_node("Mul", ["nrm", "gamma"], ["sc"]), h.make_node("Add", ["sc", "beta"], [y])]
    return n


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_pattern(tmp_path, opset, affine):
    x, gamma, beta = f32(3, 7, 96) * 3 + 1, f32(96), f32(96)
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)}
    if affine:
        inits.update({"gamma": gamma, "beta": beta})
    p = make(tmp_path, f"ln_{opset}_{affine}", layernorm_nodes("X", "Y", affine),
             {"X": (T.FLOAT, ["batch", 7, 96])}, ["Y"], inits, opset=opset)
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (96,),
                                         torch.from_numpy(gamma) if affine else None,
                                         torch.from_numpy(beta) if affine else None, 1e-5).numpy()
    check(p, {"X": x}, {"Y": ref}, tol=1e-5)
    ops, rw = optimized(p)
    want = "LayerNormalization" if opset >= 17 else "com.tern.LayerNormalization"
    assert ops == {want: 1}, ops
    assert rw["layernorm"] == 1


def test_layernorm_pattern_needs_private_intermediates(tmp_path):
    # the centred value d is also a graph output: the pattern must stay
    x = f32(4, 32)
    nodes = layernorm_nodes("X", "Y")
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
             "gamma": np.ones(32, np.float32), "beta": np.zeros(32, np.float32)}
    p = make(tmp_path, "ln_shared", nodes, {"X": x}, ["Y", "d"], inits)
    d = x - x.mean(-1, keepdims=True)
    check(p, {"X": x}, {"Y": d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5), "d": d})
    assert "layernorm" not in optimized(p)[1]


@pytest.mark.parametrize("order", ["a", "b", "c", "mul_rsqrt2"])
def test_gelu_pattern(tmp_path, order):
    x = np.concatenate([np.linspace(-8, 8, 4001, dtype=np.float32), f32(999) * 3])
    inits = dict(GELU_INITS, rsqrt2=np.array(1 / math.sqrt(2), np.float32))
    if order == "a":        # (x * (erf(x/sqrt2) + 1)) * 0.5
        nodes = gelu_nodes("X", "Y", "g")
    elif order == "b":      # (x * 0.5) * (1 + erf(x/sqrt2))
        nodes = [h.make_node("Div", ["X", "sqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                 h.make_node("Add", ["one", "e"], ["p"]), h.make_node("Mul", ["X", "half"], ["hx"]),
                 h.make_node("Mul", ["hx", "p"], ["Y"])]
    elif order == "c":      # x * ((erf(x/sqrt2) + 1) * 0.5)
        nodes = [h.make_node("Div", ["X", "sqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                 h.make_node("Add", ["e", "one"], ["p"]), h.make_node("Mul", ["half", "p"], ["q"]),
                 h.make_node("Mul", ["X", "q"], ["Y"])]
    else:                   # Mul by 1/sqrt2 instead of Div
        nodes = [h.make_node("Mul", ["X", "rsqrt2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                 h.make_node("Add", ["e", "one"], ["p"]), h.make_node("Mul", ["X", "p"], ["m"]),
                 h.make_node("Mul", ["m", "half"], ["Y"])]
    p = make(tmp_path, f"gelu_{order}", nodes, {"X": x}, ["Y"], inits)
    ref = 0.5 * x.astype(np.float64) * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    got = run(p, {"X": x})["Y"]
    # within float rounding of the exact GELU, absolutely and relative to |x|
    assert np.all(np.abs(got - ref) <= 1e-6 * np.maximum(1, np.abs(x))), np.max(np.abs(got - ref))
    check(p, {"X": x}, {"Y": ref})
    ops, rw = optimized(p)
    assert ops == {"com.tern.Gelu": 1}, ops


def test_gelu_special_values(tmp_path):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -40, 40], np.float32)
    p = make(tmp_path, "gelu_special", gelu_nodes("X", "Y", "g"), {"X": x}, ["Y"], GELU_INITS)
    got = run(p, {"X": x})["Y"]
    assert np.isnan(got[0]) and got[1] == np.inf and got[3] == 0 and got[6] == 0 and got[7] == 40
    assert np.isnan(got[2]) or got[2] == 0  # -inf * 0: NaN, as the unfused graph gives


# ---- 7. Transpose and Reshape chains ----------------------------------------------


def test_transpose_pairs(tmp_path):
    x = f32(2, 3, 4, 5)
    nodes = [h.make_node("Transpose", ["X"], ["t1"], perm=[0, 2, 3, 1]),
             h.make_node("Transpose", ["t1"], ["Y1"], perm=[0, 3, 1, 2]),   # identity
             h.make_node("Transpose", ["X"], ["t2"], perm=[1, 0, 2, 3]),
             h.make_node("Transpose", ["t2"], ["Y2"], perm=[0, 1, 3, 2])]   # composed
    p = make(tmp_path, "transposes", nodes, {"X": x}, ["Y1", "Y2"])
    check(p, {"X": x}, {"Y1": x, "Y2": x.transpose(1, 0, 3, 2)})
    ops, rw = optimized(p)
    # Y1 is a graph output, so one node must still write it: the identity Transpose
    assert ops == {"Transpose": 2}, ops
    assert rw["transpose"] == 2


def test_transpose_pair_cancels(tmp_path):
    x = f32(2, 3, 4)
    nodes = [h.make_node("Transpose", ["X"], ["t1"], perm=[2, 0, 1]),
             h.make_node("Transpose", ["t1"], ["t2"], perm=[1, 2, 0]),
             h.make_node("Relu", ["t2"], ["Y"])]
    p = make(tmp_path, "transpose_cancel", nodes, {"X": x}, ["Y"])
    check(p, {"X": x}, {"Y": np.maximum(x, 0)})
    assert optimized(p)[0] == {"Relu": 1}


def test_reshape_chain(tmp_path):
    x = f32(2, 3, 4)
    nodes = [h.make_node("Reshape", ["X", "s1"], ["r1"]),
             h.make_node("Flatten", ["r1"], ["f"], axis=1),
             h.make_node("Reshape", ["f", "s2"], ["r2"]),
             h.make_node("Relu", ["r2"], ["Y"])]
    p = make(tmp_path, "reshapes", nodes, {"X": x}, ["Y"],
             {"s1": np.array([6, 4], np.int64), "s2": np.array([4, -1], np.int64)})
    check(p, {"X": x}, {"Y": np.maximum(x.reshape(4, 6), 0)})
    ops, rw = optimized(p)
    assert ops == {"Reshape": 1, "Relu": 1}, ops
    assert rw["reshape"] == 2


def test_reshape_with_copy_dims_keeps_its_input(tmp_path):
    x = f32(2, 3, 4)
    nodes = [h.make_node("Reshape", ["X", "s1"], ["r1"]),
             h.make_node("Reshape", ["r1", "s2"], ["Y"])]   # 0 copies r1's dim, not X's
    p = make(tmp_path, "reshape_zero", nodes, {"X": x}, ["Y"],
             {"s1": np.array([6, 4], np.int64), "s2": np.array([0, 2, 2], np.int64)})
    check(p, {"X": x}, {"Y": x.reshape(6, 2, 2)})
    assert optimized(p)[0] == {"Reshape": 2}


# ---- switches --------------------------------------------------------------------


def test_optimisation_can_be_turned_off(tmp_path):
    x = f32(4, 8)
    nodes = [h.make_node("Identity", ["X"], ["a"]), h.make_node("Relu", ["a"], ["Y"])]
    p = make(tmp_path, "switch", nodes, {"X": x}, ["Y"])
    assert optimized(p)[0] == {"Relu": 1}
    env = dict(os.environ, TERN_OPTIMIZE="0")
    assert optimized(p, env)[0] == {"Identity": 1, "Relu": 1}


def test_malformed_nodes_in_patterns_do_not_crash(tmp_path):
    # nodes with fewer inputs than their op needs, inside the shapes the
    # passes match: loading may fail or running may fail, with a message
    x = f32(4, 8)
    cases = {
        "ln_sub1": [h.make_node("ReduceMean", ["X"], ["mu"], axes=[-1]),
                    h.make_node("Sub", ["X"], ["d"]),
                    h.make_node("Pow", ["d", "two"], ["d2"]),
                    h.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
                    h.make_node("Add", ["var", "two"], ["ve"]),
                    h.make_node("Sqrt", [], ["sd"]),
                    h.make_node("Div", ["d", "sd"], ["Y"])],
        "transpose0": [h.make_node("Transpose", [], ["t"], perm=[1, 0]),
                       h.make_node("Transpose", ["t"], ["Y"], perm=[1, 0])],
        "gelu_erf0": [h.make_node("Erf", [], ["e"]), h.make_node("Add", ["e", "two"], ["p"]),
                      h.make_node("Mul", ["X", "p"], ["m"]), h.make_node("Mul", ["m", "two"], ["Y"])],
        "bn_short": [h.make_node("Conv", ["X4"], ["c"]),
                     h.make_node("BatchNormalization", ["c", "two"], ["Y"])],
        "relu_of_gemm1": [h.make_node("Gemm", ["X"], ["g"]), h.make_node("Relu", ["g"], ["Y"])],
    }
    for name, nodes in cases.items():
        p = make(tmp_path, name, nodes, {"X": x, "X4": f32(1, 2, 3, 3)}, ["Y"],
                 {"two": np.array(2.0, np.float32)})
        for args in (["check", p, "--optimized"],
                     ["run", p, "--output-dir", str(tmp_path), "--input",
                      f"X={tmp_path}/x.npy", "--input", f"X4={tmp_path}/x4.npy"]):
            np.save(f"{tmp_path}/x.npy", x)
            np.save(f"{tmp_path}/x4.npy", f32(1, 2, 3, 3))
            r = subprocess.run([TERN] + args, capture_output=True, text=True, timeout=120)
            assert r.returncode in (0, 1), (name, r.returncode, r.stderr)
            assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
            if r.returncode:
                assert r.stderr.startswith("tern: error: "), r.stderr
