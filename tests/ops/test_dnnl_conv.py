"""float32 Conv, com.tern FusedConv and the pools through oneDNN, against
torch and against tern's own portable kernels (TERN_DNNL=0), through
`tern run`.

Each model holds many independent convolutions (one graph input and output
each) so that one process covers many shapes. ONEDNN_VERBOSE=1 makes oneDNN
print a line per primitive it runs: the tests count those lines to prove
that the oneDNN path (and Winograd, unless TERN_DNNL=direct) really ran, and
the TERN_DNNL=0 runs must print none. The chains pass the channel-blocked
layout between convs and pools, into plain-only kernels (Relu, Add, Flatten,
Identity, a sequence) and out as graph outputs."""
import os
import subprocess

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

TERN = os.environ.get("TERN_BIN", "build/tern")
rng = np.random.default_rng(7)


def f32(*s):
    return rng.standard_normal(s).astype(np.float32)


def run_model(tmp, name, nodes, inits, feeds, outputs, threads=1, dnnl="1", opsets=None,
              kind="convolution", repeat=1):
    """Runs the model in tern with TERN_DNNL=dnnl ("1": oneDNN, "direct": no
    Winograd, "0": portable kernels only); returns ({output: array}, the
    lines oneDNN printed for the primitives it ran, pooling with kind="pooling_v2")."""
    g = h.make_graph(nodes, name,
                     [h.make_tensor_value_info(k, T.FLOAT, None) for k in feeds],
                     [h.make_tensor_value_info(o, T.INT64 if o.startswith("idx") else T.FLOAT, None)
                      for o in outputs],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=opsets or [h.make_opsetid("", 13)])
    path = f"{tmp}/{name}.onnx"
    onnx.save(m, path)
    out = f"{tmp}/{name}_out_{threads}_{dnnl}"
    os.makedirs(out, exist_ok=True)
    args = [TERN, "run", path, "--output-dir", out, "--threads", str(threads)]
    if repeat > 1:
        args += ["--repeat", str(repeat - 1)]  # after one untimed run
    for k, v in feeds.items():
        np.save(f"{tmp}/{name}_{k}.npy", v)
        args += ["--input", f"{k}={tmp}/{name}_{k}.npy"]
    env = dict(os.environ, ONEDNN_VERBOSE="1", TERN_DNNL=dnnl)
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    convs = [l for l in r.stdout.splitlines() if l.startswith(f"onednn_verbose,exec,cpu,{kind},")]
    return {o: np.load(f"{out}/{o}.npy") for o in outputs}, convs


def torch_conv(x, w, b, strides, dil, pads, group):
    """ONNX Conv through torch: asymmetric pads applied with F.pad first."""
    nsp = x.ndim - 2
    tp = []
    for d in reversed(range(nsp)):  # F.pad wants the last dim first
        tp += [pads[d], pads[d + nsp]]
    xt = F.pad(torch.from_numpy(x).double(), tp)
    fn = (F.conv1d, F.conv2d, F.conv3d)[nsp - 1]
    y = fn(xt, torch.from_numpy(w).double(), None if b is None else torch.from_numpy(b).double(),
           stride=strides, dilation=dil, groups=group)
    return y.numpy()


def act_ref(y, act, params):
    if act is None:
        return y
    t = torch.from_numpy(y)
    if act == "Relu":
        return F.relu(t).numpy()
    if act == "LeakyRelu":
        return F.leaky_relu(t, params[0]).numpy()
    if act == "Clip":
        return torch.clamp(t, params[0], params[1]).numpy()
    if act == "Sigmoid":
        return torch.sigmoid(t).numpy()
    if act == "Tanh":
        return torch.tanh(t).numpy()
    if act == "HardSigmoid":
        return torch.clamp(params[0] * t + params[1], 0, 1).numpy()
    raise ValueError(act)


def close(y, ref, tol=2e-5):
    assert y.shape == ref.shape, (y.shape, ref.shape)
    err = np.abs(y.astype(np.float64) - ref).max() / max(1e-6, np.abs(ref).max())
    return err < tol, err


# (name, batch, C, M, spatial, kernel, stride, dilation, pads (begin.., end..), group, bias)
CASES = [
    ("3x3", 1, 16, 32, (14, 14), (3, 3), 1, 1, (1, 1, 1, 1), 1, True),
    ("first_layer", 1, 3, 64, (32, 32), (7, 7), 2, 1, (3, 3, 3, 3), 1, True),
    ("odd", 1, 5, 7, (9, 11), (3, 2), 1, 1, (0, 1, 1, 0), 1, True),
    ("stride2_b3", 3, 32, 48, (15, 15), (3, 3), 2, 1, (1, 1, 1, 1), 1, True),
    ("dilated", 1, 16, 16, (17, 13), (3, 3), 1, 2, (2, 2, 2, 2), 1, False),
    ("asym_pads", 1, 16, 32, (10, 12), (3, 3), 1, 1, (0, 2, 1, 0), 1, True),
    ("1x1", 1, 64, 128, (7, 7), (1, 1), 1, 1, (0, 0, 0, 0), 1, True),
    ("1x1_s2_b3", 3, 64, 24, (14, 14), (1, 1), 2, 1, (0, 0, 0, 0), 1, True),
    ("grouped", 1, 32, 64, (12, 12), (3, 3), 1, 1, (1, 1, 1, 1), 4, True),
    ("grouped_odd", 3, 6, 9, (8, 7), (3, 3), 2, 1, (1, 0, 1, 0), 3, True),
    ("depthwise", 1, 32, 32, (28, 28), (3, 3), 1, 1, (1, 1, 1, 1), 32, True),
    ("depthwise_s2", 3, 96, 96, (15, 15), (3, 3), 2, 1, (1, 1, 1, 1), 96, True),
    ("depthwise_mult2", 1, 16, 32, (10, 10), (5, 5), 1, 1, (2, 2, 2, 2), 16, False),
    ("deep", 1, 256, 512, (7, 7), (3, 3), 1, 1, (1, 1, 1, 1), 1, True),
    ("big_kernel", 1, 8, 16, (20, 20), (5, 5), 3, 1, (2, 2, 2, 2), 1, True),
    ("1d", 3, 16, 32, (50,), (5,), 2, 1, (2, 2), 1, True),
    ("1d_dw", 1, 16, 16, (33,), (3,), 1, 2, (2, 2), 16, True),
    ("3d", 1, 16, 32, (6, 7, 8), (3, 3, 3), 1, 1, (1, 1, 1, 1, 1, 1), 1, True),
    ("3d_b3", 3, 4, 8, (5, 6, 5), (2, 3, 1), 2, 1, (0, 1, 0, 1, 0, 0), 1, False),
]


def conv_cases(batch_override=None):
    nodes, inits, feeds, refs = [], {}, {}, {}
    for name, n, c, m, sp, k, s, d, pads, group, bias in CASES:
        if batch_override:
            n = batch_override
        nsp = len(sp)
        x, w = f32(n, c, *sp), f32(m, c // group, *k)
        b = f32(m) if bias else None
        ins = [f"x_{name}", f"w_{name}"] + ([f"b_{name}"] if bias else [])
        nodes.append(h.make_node("Conv", ins, [f"y_{name}"], name=name, kernel_shape=list(k),
                                 strides=[s] * nsp, dilations=[d] * nsp, pads=list(pads), group=group))
        inits[f"w_{name}"] = w
        if bias:
            inits[f"b_{name}"] = b
        feeds[f"x_{name}"] = x
        refs[f"y_{name}"] = torch_conv(x, w, b, [s] * nsp, [d] * nsp, pads, group)
    return nodes, inits, feeds, refs


@pytest.mark.parametrize("threads,batch", [(1, None), (2, None), (2, 1)])
def test_conv_shapes(tmp_path, threads, batch):
    nodes, inits, feeds, refs = conv_cases(batch)
    outs = list(refs)
    # two runs: a shape's first run takes direct plans, the second Winograd
    got, convs = run_model(tmp_path, "convs", nodes, inits, feeds, outs, threads, repeat=2)
    first, convs = convs[:len(CASES)], convs[len(CASES):]
    assert not any("wino" in l for l in first), "\n".join(first)
    direct, convs_direct = run_model(tmp_path, "convs", nodes, inits, feeds, outs, threads, dnnl="direct")
    port, convs_off = run_model(tmp_path, "convs", nodes, inits, feeds, outs, threads, dnnl="0")
    assert convs_off == []
    # Every case has a oneDNN implementation: each node ran through it once;
    # the 3x3 stride-1 ones through Winograd unless told not to.
    assert len(convs) == len(CASES) and len(convs_direct) == len(CASES), "\n".join(convs)
    assert any("wino" in l for l in convs), "\n".join(convs)
    assert not any("wino" in l for l in convs_direct)
    bad = []
    for o in outs:
        for what, y in (("onednn", got[o]), ("direct", direct[o]), ("portable", port[o])):
            ok, err = close(y, refs[o])
            if not ok:
                bad.append(f"{o} {what}: relerr {err:.2e}")
        ok, err = close(got[o], port[o].astype(np.float64))
        if not ok:
            bad.append(f"{o} onednn vs portable: relerr {err:.2e}")
    assert not bad, "\n".join(bad)


ACTS = [(None, []), ("Relu", []), ("LeakyRelu", [0.1]), ("Clip", [-0.5, 1.5]), ("Clip", [0.0, 6.0]),
        ("Sigmoid", []), ("Tanh", []), ("HardSigmoid", [0.3, 0.4]), ("LeakyRelu", []), ("HardSigmoid", [])]
DEFAULT_PARAMS = {"LeakyRelu": [0.01], "HardSigmoid": [0.2, 0.5]}


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_conv(tmp_path, threads):
    """Every activation, with and without Z, Z given plain (a graph input)
    or blocked (a conv's output), bias present or not, 16k channels or not."""
    nodes, inits, feeds, refs = [], {}, {}, {}
    x = f32(3, 16, 12, 12)
    feeds["x"] = x
    for i, (act, params) in enumerate(ACTS):
        for zkind in ("none", "input", "conv"):
            for m, bias in ((32, True), (24, False)):
                tag = f"{i}_{zkind}_{m}"
                w = f32(m, 16, 3, 3)
                b = f32(m) if bias else None
                inits[f"w{tag}"] = w
                ins = ["x", f"w{tag}", f"b{tag}" if bias else ""]
                if bias:
                    inits[f"b{tag}"] = b
                y = torch_conv(x, w, b, [1, 1], [1, 1], [1, 1, 1, 1], 1)
                if zkind == "input":
                    z = f32(*y.shape)
                    feeds[f"z{tag}"] = z
                    ins.append(f"z{tag}")
                    y = y + z
                elif zkind == "conv":  # Z made by a 1x1 conv: blocked when m % 16 == 0
                    wz = f32(m, 16, 1, 1)
                    inits[f"wz{tag}"] = wz
                    nodes.append(h.make_node("Conv", ["x", f"wz{tag}"], [f"z{tag}"], kernel_shape=[1, 1]))
                    ins.append(f"z{tag}")
                    y = y + torch_conv(x, wz, None, [1, 1], [1, 1], [0, 0, 0, 0], 1)
                attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
                if act:
                    attrs["activation"] = act
                if params:
                    attrs["activation_params"] = params
                nodes.append(h.make_node("FusedConv", ins, [f"y{tag}"], domain="com.tern", **attrs))
                refs[f"y{tag}"] = act_ref(y, act, params or DEFAULT_PARAMS.get(act, []))
    outs = list(refs)
    # com.tern is deliberately not imported: tern's own domain needs no import
    got, convs = run_model(tmp_path, "fused", nodes, inits, feeds, outs, threads)
    port, convs_off = run_model(tmp_path, "fused", nodes, inits, feeds, outs, threads, dnnl="0")
    assert convs_off == []
    assert len(convs) == len(nodes), f"{len(convs)} oneDNN convolutions for {len(nodes)} nodes"
    assert any("attr-post-ops:binary_add" in l or "sum" in l for l in convs)
    bad = []
    for o in outs:
        for what, y in (("onednn", got[o]), ("portable", port[o])):
            ok, err = close(y, refs[o], 5e-5)
            if not ok:
                bad.append(f"{o} {what}: relerr {err:.2e}")
    assert not bad, "\n".join(bad)


def test_blocked_chains(tmp_path):
    """Blocked tensors between convs and pools, unblocked for a Relu, an Add
    and a Flatten, and for graph outputs (one also read by a later conv)."""
    x = f32(2, 3, 32, 32)
    w1, w2, w3, w4, w5 = f32(32, 3, 3, 3), f32(32, 32, 3, 3), f32(48, 32, 1, 1), f32(16, 48, 3, 3), f32(32, 16, 1, 1)
    nodes = [
        h.make_node("FusedConv", ["x", "w1"], ["a"], domain="com.tern", kernel_shape=[3, 3], pads=[1] * 4,
                    strides=[2, 2], activation="Relu"),
        h.make_node("MaxPool", ["a"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        h.make_node("Conv", ["p", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1] * 4),  # graph output too
        h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("Add", ["r2", "p"], ["s2"]),
        h.make_node("Conv", ["s2", "w3"], ["c3"], kernel_shape=[1, 1]),  # 48 channels: blocked
        h.make_node("Conv", ["c3", "w4"], ["c4"], kernel_shape=[3, 3], pads=[1] * 4),
        h.make_node("AveragePool", ["c4"], ["ap"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
        h.make_node("Conv", ["ap", "w5"], ["c5"], kernel_shape=[1, 1]),
        h.make_node("GlobalAveragePool", ["c5"], ["g"]),
        h.make_node("GlobalMaxPool", ["c4"], ["gm"]),
        h.make_node("Flatten", ["c5"], ["flat"]),
        # plain-only kernels that keep their (unblocked) input: a view and a sequence
        h.make_node("Identity", ["c4"], ["ident"]),
        h.make_node("SequenceConstruct", ["c4", "c2"], ["seq"]),
        h.make_node("Conv", ["c4", "w5"], ["c6"], kernel_shape=[1, 1]),  # reuses freed memory
        h.make_node("SequenceAt", ["seq", "zero"], ["seq0"]),
    ]
    inits = {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "zero": np.array(0, np.int64)}
    outs = ["c2", "c4", "g", "gm", "flat", "ident", "seq0", "c6"]
    got, convs = run_model(tmp_path, "chain", nodes, inits, {"x": x}, outs,
                           opsets=[h.make_opsetid("", 13), h.make_opsetid("com.tern", 1)])
    assert len(convs) == 6

    t = lambda a: torch.from_numpy(a).double()
    a = F.relu(F.conv2d(t(x), t(w1), stride=2, padding=1))
    p = F.max_pool2d(a, 3, 2, 1)
    c2 = F.conv2d(p, t(w2), padding=1)
    s2 = F.relu(c2) + p
    c3 = F.conv2d(s2, t(w3))
    c4 = F.conv2d(c3, t(w4), padding=1)
    # count_include_pad=0: divide by the positions inside the input
    ap = F.avg_pool2d(F.pad(c4, [0, 1, 0, 1]), 2, 1) / F.avg_pool2d(F.pad(torch.ones_like(c4), [0, 1, 0, 1]), 2, 1)
    c5 = F.conv2d(ap, t(w5))
    refs = {"c2": c2, "c4": c4, "g": c5.mean((2, 3), keepdim=True), "gm": c4.amax((2, 3), keepdim=True),
            "flat": c5.flatten(1), "ident": c4, "seq0": c4, "c6": F.conv2d(c4, t(w5))}
    bad = []
    for o in outs:
        ok, err = close(got[o], refs[o].numpy())
        if not ok:
            bad.append(f"{o}: relerr {err:.2e}")
    assert not bad, "\n".join(bad)


def test_blocked_pools(tmp_path):
    """MaxPool / AveragePool windows on a blocked input (a conv's output):
    through oneDNN where it takes them, the blocked loop or the plain path
    (Indices, 3-D) elsewhere; against torch and the portable kernels."""
    x2, x3 = f32(2, 8, 13, 15), f32(1, 8, 6, 7, 9)
    w2, w3 = f32(32, 8, 1, 1), f32(16, 8, 1, 1, 1)
    nodes = [h.make_node("Conv", ["x2", "w2"], ["c2"], kernel_shape=[1, 1]),
             h.make_node("Conv", ["x3", "w3"], ["c3"], kernel_shape=[1, 1, 1])]
    t = lambda a: torch.from_numpy(a).double()
    c2 = F.conv2d(t(x2), t(w2))
    c3 = F.conv3d(t(x3), t(w3))
    refs = {}

    def pool(op, src, out, ref, **attrs):
        outs = [out] + (["idx_" + out] if op == "MaxPoolIdx" else [])
        nodes.append(h.make_node("MaxPool" if op == "MaxPoolIdx" else op, [src], outs, **attrs))
        refs[out] = ref

    pool("MaxPool", "c2", "max_plain", F.max_pool2d(c2, 3, 2, 1), kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    pool("MaxPool", "c2", "max_ceil", F.max_pool2d(c2, 3, 2, 0, ceil_mode=True), kernel_shape=[3, 3],
         strides=[2, 2], ceil_mode=1)
    pool("MaxPool", "c2", "max_dil", F.max_pool2d(c2, 2, 1, 0, dilation=2), kernel_shape=[2, 2], dilations=[2, 2])
    pool("MaxPool", "c2", "max_asym", F.max_pool2d(F.pad(c2, [0, 2, 1, 0], value=-np.inf), 3, 1),
         kernel_shape=[3, 3], pads=[1, 0, 0, 2])
    ymax, imax = F.max_pool2d(c2, 2, 2, return_indices=True)
    pool("MaxPoolIdx", "c2", "max_idx", ymax, kernel_shape=[2, 2], strides=[2, 2])
    plane = torch.arange(c2.shape[0] * c2.shape[1]).reshape(c2.shape[0], c2.shape[1], 1, 1) * c2.shape[2] * c2.shape[3]
    refs["idx_max_idx"] = (imax + plane).double()
    pool("AveragePool", "c2", "avg_excl", F.avg_pool2d(F.pad(c2, [1] * 4), 3, 2) /
         F.avg_pool2d(F.pad(torch.ones_like(c2), [1] * 4), 3, 2), kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    pool("AveragePool", "c2", "avg_incl", F.avg_pool2d(F.pad(c2, [0, 1, 1, 0]), 2, 2), kernel_shape=[2, 2],
         strides=[2, 2], pads=[1, 0, 0, 1], count_include_pad=1)
    pool("AveragePool", "c2", "avg_incl_ceil", F.avg_pool2d(c2, 3, 2, 1, ceil_mode=True, count_include_pad=True),
         kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4, ceil_mode=1, count_include_pad=1)
    pool("MaxPool", "c3", "max3d", F.max_pool3d(c3, 2, 2), kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    pool("AveragePool", "c3", "avg3d", F.avg_pool3d(c3, 3, 1, 1, count_include_pad=False), kernel_shape=[3, 3, 3],
         pads=[1] * 6)
    outs = list(refs)
    inits, feeds = {"w2": w2, "w3": w3}, {"x2": x2, "x3": x3}
    got, convs = run_model(tmp_path, "pools", nodes, inits, feeds, outs)
    port, _ = run_model(tmp_path, "pools", nodes, inits, feeds, outs, dnnl="0")
    _, pools = run_model(tmp_path, "pools", nodes, inits, feeds, outs, kind="pooling_v2")
    assert len(convs) == 2
    # oneDNN: all but Indices and count_include_pad with ceil_mode
    assert len(pools) == len(outs) - 3, "\n".join(pools)
    bad = []
    for o in outs:
        for what, y in (("onednn", got[o]), ("portable", port[o])):
            ok, err = close(y, refs[o].numpy())
            if not ok:
                bad.append(f"{o} {what}: relerr {err:.2e}")
    assert not bad, "\n".join(bad)


def test_fused_conv_errors(tmp_path):
    x, w = f32(1, 4, 5, 5), f32(8, 4, 3, 3)
    for attrs, z, msg in [({"activation": "Gelu"}, None, "unknown activation 'Gelu'"),
                          ({}, f32(1, 8, 4, 4), "Z must have the type and shape of Y")]:
        feeds = {"x": x}
        ins = ["x", "w", ""]
        if z is not None:
            feeds["z"] = z
            ins.append("z")
        node = h.make_node("FusedConv", ins, ["y"], name="fc", domain="com.tern", kernel_shape=[3, 3], **attrs)
        with pytest.raises(AssertionError) as e:
            run_model(tmp_path, "err", [node], {"w": w}, feeds, ["y"])
        assert "node 'fc' (FusedConv)" in str(e.value) and msg in str(e.value)


def test_blocked_concat(tmp_path):
    """Concat of blocked conv outputs along the channels stays blocked (as in
    squeezenet's fire modules) and feeds a conv; along another axis, or
    mixed with a plain input, its inputs are made plain first."""
    x, y = f32(2, 16, 9, 11), f32(2, 7, 9, 11)
    w1, w2, w3 = f32(16, 16, 1, 1), f32(32, 16, 3, 3), f32(16, 48, 1, 1)
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1]),
        h.make_node("Conv", ["x", "w2"], ["b"], kernel_shape=[3, 3], pads=[1] * 4),
        h.make_node("Concat", ["a", "b"], ["cat"], axis=1),          # blocked in, blocked out
        h.make_node("Conv", ["cat", "w3"], ["c"], kernel_shape=[1, 1]),
        h.make_node("Concat", ["a", "y"], ["mixed"], axis=1),        # blocked + plain
        h.make_node("Concat", ["a", "a"], ["batch"], axis=0),        # blocked, other axis
        h.make_node("Concat", ["b", "b"], ["last"], axis=-1),
    ]
    inits = {"w1": w1, "w2": w2, "w3": w3}
    outs = ["cat", "c", "mixed", "batch", "last"]
    got, convs = run_model(tmp_path, "concat", nodes, inits, {"x": x, "y": y}, outs)
    assert len(convs) == 3
    t = lambda v: torch.from_numpy(v).double()
    a = F.conv2d(t(x), t(w1))
    b = F.conv2d(t(x), t(w2), padding=1)
    cat = torch.cat([a, b], 1)
    refs = {"cat": cat, "c": F.conv2d(cat, t(w3)), "mixed": torch.cat([a, t(y)], 1),
            "batch": torch.cat([a, a], 0), "last": torch.cat([b, b], -1)}
    bad = []
    for o in outs:
        ok, err = close(got[o], refs[o].numpy())
        if not ok:
            bad.append(f"{o}: relerr {err:.2e}")
    assert not bad, "\n".join(bad)
    # the conv after the Concat read its blocked memory: no reorder of the
    # 48-channel activation ran
    _, reorders = run_model(tmp_path, "concat", nodes, inits, {"x": x, "y": y}, outs, kind="reorder")
    assert reorders and not [l for l in reorders if ",2x48x9x11," in l], reorders
