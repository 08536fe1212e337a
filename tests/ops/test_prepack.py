"""MatMul, Gemm and Conv with weights prepacked at load (constant
initializers), as graph inputs, and as initializers overridden at run time,
through `tern run`, against numpy. Sizes are large enough to take the
prepacked paths, which the conformance data's small cases do not reach."""
import itertools
import os
import subprocess
import numpy as np
import onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh

TERN = os.environ.get("TERN_BIN", "build/tern")
D = None  # set by the test
rng = np.random.default_rng(0)
fails = []

def run(name, nodes, inputs, inits, outputs, feeds, ref, opset=13, tol=1e-4):
    global fails
    g = h.make_graph(nodes, name,
                     [h.make_tensor_value_info(n, T.FLOAT, None) for n in inputs],
                     [h.make_tensor_value_info(n, T.FLOAT, None) for n in outputs],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    path = f"{D}/{name}.onnx"
    onnx.save(m, path)
    args = [TERN, "run", path, "--output-dir", f"{D}/out", "--threads", "2"]
    for k, v in feeds.items():
        np.save(f"{D}/{name}_{k}.npy", v)
        args += ["--input", f"{k}={D}/{name}_{k}.npy"]
    os.makedirs(f"{D}/out", exist_ok=True)
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        fails.append(f"{name}: {r.stderr.strip()}"); return
    y = np.load(f"{D}/out/{outputs[0]}.npy")
    err = np.abs(y - ref).max() / max(1e-6, np.abs(ref).max())
    ok = y.shape == ref.shape and err < tol
    if not ok:
        fails.append(f"{name}: shape {y.shape} vs {ref.shape}, relerr {err:.2e}")

f32 = lambda *s: rng.standard_normal(s).astype(np.float32)

def conv_ref(x, w, b, group, stride, pad):
    n, c, H, W = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (H + 2 * pad - kh) // stride + 1
    ow = (W + 2 * pad - kw) // stride + 1
    y = np.zeros((n, m, oh, ow), np.float64)
    mg = m // group
    for gi in range(group):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                y[:, gi * mg:(gi + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, w[gi * mg:(gi + 1) * mg, :, i, j])
    return (y + b[None, :, None, None]).astype(np.float32)



def test_prepacked_paths(tmp_path):
    global D
    D = str(tmp_path)
    # MatMul, constant B, batched A; and the same B as a graph input.
    A, B = f32(3, 5, 40, 300), f32(300, 70)
    run("mm_const", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A"], {"B": B}, ["Y"], {"A": A}, A @ B)
    run("mm_input", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A", "B"], {}, ["Y"], {"A": A, "B": B}, A @ B)
    A1 = f32(300)
    run("mm_vec", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A"], {"B": B}, ["Y"], {"A": A1}, A1 @ B)
    # Initializer that is also a graph input: default, then overridden.
    B2 = f32(300, 70)
    run("mm_default", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A", "B"], {"B": B}, ["Y"], {"A": A}, A @ B)
    run("mm_override", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A", "B"], {"B": B}, ["Y"], {"A": A, "B": B2}, A @ B2)
    # Wide B: more columns than one superblock of the on-the-fly path.
    A3, B3 = f32(5, 300), f32(300, 4001)
    run("mm_wide", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A"], {"B": B3}, ["Y"], {"A": A3}, A3 @ B3)

    # 1 to 3 rows (a batch of one), which skip the 4-row tiles, with B
    # constant (packed at load) and as an input (not packed); the wide case
    # is split over threads.
    for m, k, n in [(1, 300, 70), (2, 300, 70), (3, 300, 70), (1, 1000, 700), (3, 600, 300)]:
        Am, Bm = f32(m, k), f32(k, n)
        run(f"mm_const_m{m}_{n}", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A"], {"B": Bm}, ["Y"], {"A": Am}, Am @ Bm)
        run(f"mm_input_m{m}_{n}", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A", "B"], {}, ["Y"], {"A": Am, "B": Bm}, Am @ Bm)
    A4 = f32(1, 3, 300)  # batch dims folding into 3 rows
    run("mm_const_b1x3", [h.make_node("MatMul", ["A", "B"], ["Y"])], ["A"], {"B": B}, ["Y"], {"A": A4}, A4 @ B)

    # Gemm: every transA/transB, alpha, beta with C; 17 rows end in a
    # 1-row tile, 1 to 3 rows are a batch of one.
    for ta, tb, m in itertools.product((0, 1), (0, 1), (17, 1, 2, 3)):
        k, n = 530, 33
        a = f32(k, m) if ta else f32(m, k)
        b = f32(n, k) if tb else f32(k, n)
        cc = f32(n)
        ref = 0.5 * ((a.T if ta else a) @ (b.T if tb else b)) + 2.0 * cc
        node = h.make_node("Gemm", ["A", "B", "C"], ["Y"], transA=ta, transB=tb, alpha=0.5, beta=2.0)
        run(f"gemm_const_{ta}{tb}_m{m}", [node], ["A"], {"B": b, "C": cc}, ["Y"], {"A": a}, ref)
        run(f"gemm_input_{ta}{tb}_m{m}", [node], ["A", "B"], {"C": cc}, ["Y"], {"A": a, "B": b}, ref)

    # Conv: deep layer (swapped order), shallow (normal), grouped, pointwise, batch 1 and 3;
    # 1 to 3 output positions (swapped, rows of A fewer than a tile) and 6 output channels
    # (normal, the bias on a 2-row tile). hw may be (height, width).
    cases = [("deep", 1, 128, 256, 3, 7, 1, 1, 1), ("deep_b3", 3, 128, 256, 3, 7, 1, 1, 1),
             ("shallow", 1, 8, 16, 3, 32, 1, 1, 1), ("grouped", 2, 64, 128, 3, 6, 4, 1, 1),
             ("pointwise", 1, 96, 320, 1, 7, 1, 1, 0), ("strided_b8", 8, 64, 128, 3, 14, 2, 2, 1),
             ("p1", 1, 128, 256, 3, 3, 1, 1, 0), ("p2_b2", 2, 128, 256, 3, (3, 4), 1, 1, 0),
             ("p3_grouped", 1, 128, 256, 3, (3, 5), 2, 1, 0), ("shallow_m6", 1, 8, 6, 3, 32, 1, 1, 1)]
    for name, n, c, m, k, hw, group, stride, pad in cases:
        hh, ww = hw if isinstance(hw, tuple) else (hw, hw)
        x, w, b = f32(n, c, hh, ww), f32(m, c // group, k, k), f32(m)
        node = h.make_node("Conv", ["X", "W", "Bias"], ["Y"], group=group, strides=[stride, stride],
                           pads=[pad] * 4, kernel_shape=[k, k])
        ref = conv_ref(x, w, b, group, stride, pad)
        run(f"conv_const_{name}", [node], ["X"], {"W": w, "Bias": b}, ["Y"], {"X": x}, ref)
        run(f"conv_input_{name}", [node], ["X", "W"], {"Bias": b}, ["Y"], {"X": x, "W": w}, ref)
        w2 = f32(m, c // group, k, k)
        run(f"conv_override_{name}", [node], ["X", "W"], {"W": w, "Bias": b}, ["Y"], {"X": x, "W": w2},
            conv_ref(x, w2, b, group, stride, pad))
    assert not fails, "\n".join(fails)
