"""Attention fusion (src/graph/passes_attn.c) and its kernel, com.tern Attention
(src/ops/fused_attn.c).

Each graph is built with onnx.helper, run through `tern run` with the passes
and with --no-optimize, and both are compared with a float64 numpy reference;
`tern check --optimized` shows whether the block became one Attention node
(or, for the cases that must be left alone, that it did not)."""
import math
import os
import subprocess

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h

from test_passes import TERN, check, f32, make, optimized


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attn_ref(q, kt, v, scale=1.0, mask=None):
    s = q.astype(np.float64) @ kt.astype(np.float64) * scale
    if mask is not None:
        s = s + mask
    return softmax(s) @ v.astype(np.float64)


def bert_nodes(scale_op="Div", mask=True, mask_first=False):
    """torch's export of Hugging Face style self-attention on [B, T, H, d]
    projections: head split Transposes, MatMul, scale, mask, Softmax,
    MatMul, head merge Transpose."""
    nodes = [h.make_node("Transpose", ["Q4"], ["q"], perm=[0, 2, 1, 3]),
             h.make_node("Transpose", ["K4"], ["kt"], perm=[0, 2, 3, 1]),
             h.make_node("Transpose", ["V4"], ["v"], perm=[0, 2, 1, 3]),
             h.make_node("MatMul", ["q", "kt"], ["s0"]),
             h.make_node(scale_op, ["s0", "c"], ["s1"])]
    last = "s1"
    if mask:
        nodes.append(h.make_node("Add", ["M", "s1"] if mask_first else ["s1", "M"], ["s2"]))
        last = "s2"
    nodes += [h.make_node("Softmax", [last], ["p"], axis=-1),
              h.make_node("MatMul", ["p", "v"], ["o"]),
              h.make_node("Transpose", ["o"], ["Y"], perm=[0, 2, 1, 3])]
    return nodes


@pytest.mark.parametrize("b,t,heads,d", [(2, 7, 3, 8), (1, 13, 2, 16), (3, 130, 2, 32)])
@pytest.mark.parametrize("variant", ["div_mask", "mul_nomask", "mask_first"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bert_style_attention(tmp_path, b, t, heads, d, variant, threads):
    q4, k4, v4 = f32(b, t, heads, d), f32(b, t, heads, d), f32(b, t, heads, d)
    keep = rng_mask(b, t)
    mask = ((1.0 - keep) * -10000.0).astype(np.float32)[:, None, None, :]
    scale_op = "Mul" if variant == "mul_nomask" else "Div"
    c = np.float32(1 / math.sqrt(d)) if scale_op == "Mul" else np.float32(math.sqrt(d))
    has_mask = variant != "mul_nomask"
    nodes = bert_nodes(scale_op, has_mask, variant == "mask_first")
    feeds = {"Q4": q4, "K4": k4, "V4": v4}
    if has_mask:
        feeds["M"] = mask
    p = make(tmp_path, f"bert_{variant}", nodes, feeds, ["Y"], {"c": np.array(c)})
    q, kt, v = q4.transpose(0, 2, 1, 3), k4.transpose(0, 2, 3, 1), v4.transpose(0, 2, 1, 3)
    ref = attn_ref(q, kt, v, 1 / math.sqrt(d), mask if has_mask else None).transpose(0, 2, 1, 3)
    check(p, feeds, {"Y": ref}, threads=threads)
    ops, rw = optimized(p)
    assert ops == {"com.tern.Attention": 1}, ops
    assert rw["attention"] == 1, rw


def rng_mask(b, t):
    keep = np.ones((b, t), np.float32)
    for i in range(b):
        keep[i, t - i * (t // 4):] = 0  # padding at the end, longer for later rows
    return keep


@pytest.mark.parametrize("t,tk", [(13, 7), (7, 13), (1, 5)])
def test_3d_with_k_transposed_and_causal_mask(tmp_path, t, tk):
    # K' is an input already transposed; the mask [T, T'] is -inf above the
    # diagonal and is the first operand of the Add
    q, kt, v = f32(6, t, 8), f32(6, 8, tk), f32(6, tk, 5)
    mask = np.where(np.arange(tk)[None, :] > np.arange(t)[:, None] * tk // t, -np.inf,
                    0).astype(np.float32)
    nodes = [h.make_node("MatMul", ["Q", "Kt"], ["s0"]),
             h.make_node("Mul", ["c", "s0"], ["s1"]),
             h.make_node("Add", ["M", "s1"], ["s2"]),
             h.make_node("Softmax", ["s2"], ["p"], axis=2),
             h.make_node("MatMul", ["p", "V"], ["Y"])]
    feeds = {"Q": q, "Kt": kt, "V": v}
    p = make(tmp_path, "causal3d", nodes, feeds, ["Y"],
             {"c": np.array(0.3, np.float32), "M": mask})
    check(p, feeds, {"Y": attn_ref(q, kt, v, 0.3, mask)}, threads=2)
    assert optimized(p)[0] == {"com.tern.Attention": 1}


def test_mask_broadcasts_like_the_unfused_ops(tmp_path):
    # one query row and one key column, enlarged by a [3, 5] mask and by
    # batch dims of V: the fused kernel must broadcast exactly as Add and
    # MatMul do
    q, kt, v, mask = f32(2, 1, 1, 4), f32(1, 4, 1), f32(1, 2, 5, 6), f32(3, 5)
    nodes = [h.make_node("MatMul", ["Q", "Kt"], ["s0"]),
             h.make_node("Add", ["s0", "M"], ["s1"]),
             h.make_node("Softmax", ["s1"], ["p"]),
             h.make_node("MatMul", ["p", "V"], ["Y"])]
    feeds = {"Q": q, "Kt": kt, "V": v, "M": mask}
    p = make(tmp_path, "bcast", nodes, feeds, ["Y"])
    ref = attn_ref(q, kt, v, 1.0, mask)
    assert ref.shape == (2, 2, 3, 6)
    check(p, feeds, {"Y": ref})
    assert optimized(p)[0] == {"com.tern.Attention": 1}


def test_shared_or_observable_intermediates_are_not_fused(tmp_path):
    q, kt, v = f32(2, 5, 4), f32(2, 4, 5), f32(2, 5, 3)
    feeds = {"Q": q, "Kt": kt, "V": v}
    base = [h.make_node("MatMul", ["Q", "Kt"], ["s"]),
            h.make_node("Softmax", ["s"], ["P"], axis=-1),
            h.make_node("MatMul", ["P", "V"], ["Y"])]
    # the probabilities are a graph output (need_weights)
    p = make(tmp_path, "probs_out", base, feeds, ["Y", "P"])
    check(p, feeds, {"Y": attn_ref(q, kt, v), "P": softmax(q.astype(np.float64) @ kt)})
    assert optimized(p)[0] == {"MatMul": 2, "Softmax": 1}
    # the scores are read by another node too
    p = make(tmp_path, "scores_shared", base + [h.make_node("Relu", ["s"], ["Z"])], feeds,
             ["Y", "Z"])
    assert optimized(p)[0] == {"MatMul": 2, "Softmax": 1, "Relu": 1}


def test_softmax_not_over_the_last_axis_is_not_fused(tmp_path):
    q, kt, v = f32(2, 5, 4), f32(2, 4, 5), f32(2, 5, 5)
    feeds = {"Q": q, "Kt": kt, "V": v}
    nodes = [h.make_node("MatMul", ["Q", "Kt"], ["s"]),
             h.make_node("Softmax", ["s"], ["P"], axis=1),
             h.make_node("MatMul", ["P", "V"], ["Y"])]
    for opset in (11, 13):
        p = make(tmp_path, f"axis1_{opset}", nodes, feeds, ["Y"], opset=opset)
        assert optimized(p)[0] == {"MatMul": 2, "Softmax": 1}, opset
    # opset 11's default axis 1 on 3-D scores flattens the last two axes
    nodes[1] = h.make_node("Softmax", ["s"], ["P"])
    p = make(tmp_path, "axis_default_11", nodes, feeds, ["Y"], opset=11)
    assert optimized(p)[0] == {"MatMul": 2, "Softmax": 1}
    s = (q.astype(np.float64) @ kt).reshape(2, -1)
    check(p, feeds, {"Y": softmax(s).reshape(2, 5, 5) @ v})


def test_multihead_attention_from_torch(tmp_path):
    # nn.MultiheadAttention as torch 1.13 exports it (need_weights=False)
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x, mask):
            return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]

    x = torch.randn(2, 9, 32)
    mask = torch.triu(torch.full((9, 9), -1e9), diagonal=1)
    path = str(tmp_path / "mha.onnx")
    model = M().eval()
    torch.onnx.export(model, (x, mask), path, input_names=["x", "mask"], output_names=["Y"],
                      opset_version=13)
    with torch.no_grad():
        ref = model(x, mask).numpy().astype(np.float64)
    check(path, {"x": x.numpy(), "mask": mask.numpy()}, {"Y": ref})
    ops, rw = optimized(path)
    assert rw.get("attention") == 1, (ops, rw)
    assert "Softmax" not in ops, ops


def test_attention_node_errors_name_the_node(tmp_path):
    # com.tern Attention written by hand with inconsistent inputs or attributes:
    # an error naming the node, never a crash
    cases = {
        "bad_perm": ({"Q": f32(2, 3, 4), "K": f32(2, 4, 3), "V": f32(2, 3, 5)}, {"q_perm": [0, 1]}),
        "dup_perm": ({"Q": f32(2, 3, 4), "K": f32(2, 4, 3), "V": f32(2, 3, 5)},
                     {"k_perm": [0, 0, 1]}),
        "inner": ({"Q": f32(2, 3, 4), "K": f32(2, 5, 3), "V": f32(2, 3, 5)}, {}),
        "v_rows": ({"Q": f32(2, 3, 4), "K": f32(2, 4, 3), "V": f32(2, 6, 5)}, {}),
        "out_perm": ({"Q": f32(2, 3, 4), "K": f32(2, 4, 3), "V": f32(2, 3, 5)},
                     {"out_perm": [2, 1, 0]}),
        "rank1": ({"Q": f32(4), "K": f32(4, 3), "V": f32(3, 5)}, {}),
        "no_v": ({"Q": f32(2, 3, 4), "K": f32(2, 4, 3)}, {}),
    }
    for name, (feeds, attrs) in cases.items():
        node = h.make_node("Attention", list(feeds), ["Y"], name="att_" + name,
                           domain="com.tern", **attrs)
        vin = [h.make_tensor_value_info(k, T.FLOAT, v.shape) for k, v in feeds.items()]
        g = h.make_graph([node], name, vin, [h.make_tensor_value_info("Y", T.FLOAT, None)])
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 13), h.make_opsetid("com.tern", 1)])
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(m, path)
        args = [TERN, "run", path, "--output-dir", str(tmp_path)]
        for k, v in feeds.items():
            np.save(tmp_path / f"{k}.npy", v)
            args += ["--input", f"{k}={tmp_path}/{k}.npy"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        assert r.stderr.startswith("tern: error: ") and "att_" + name in r.stderr, r.stderr
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


def test_bert_fixture_is_fused_when_built():
    # the bert model of tests/models (built by the model tests into the build
    # folder): both layers' attention fused, every head Transpose absorbed
    path = os.path.join(os.path.dirname(TERN), "models", "bert_op13.onnx")
    if not os.path.isfile(path):
        pytest.skip("bert fixture not built (run the models test first)")
    ops, rw = optimized(path)
    assert rw.get("attention") == 2, rw
    assert "Softmax" not in ops and "Transpose" not in ops, ops
