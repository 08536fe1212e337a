"""The tern CLI against numpy and onnx as references: .npy round trips of
every dtype through `tern run`, output file naming, --repeat statistics,
`tern check` listings, and the embedding example."""
import json
import os
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper, save

TERN = os.environ.get("TERN_BIN", "build/tern")
EXAMPLE = os.environ.get("TERN_EXAMPLE", "build/example_classify")

DTYPES = [
    (np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE),
    (np.float16, TensorProto.FLOAT16), (np.int8, TensorProto.INT8),
    (np.int16, TensorProto.INT16), (np.int32, TensorProto.INT32),
    (np.int64, TensorProto.INT64), (np.uint8, TensorProto.UINT8),
    (np.uint16, TensorProto.UINT16), (np.uint32, TensorProto.UINT32),
    (np.uint64, TensorProto.UINT64), (np.bool_, TensorProto.BOOL),
]


def run(*args):
    return subprocess.run([TERN, *map(str, args)], capture_output=True, text=True, timeout=300)


def identity_model(path, elem, out_name="y", shape=None):
    x = helper.make_tensor_value_info("x", elem, shape)
    y = helper.make_tensor_value_info(out_name, elem, shape)
    g = helper.make_graph([helper.make_node("Identity", ["x"], [out_name])], "id", [x], [y])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("np_dt,elem", DTYPES, ids=[d[0].__name__ for d in DTYPES])
def test_npy_roundtrip(tmp_path, np_dt, elem):
    rng = np.random.default_rng(1)
    if np_dt == np.bool_:
        x = rng.random((3, 4, 5)) > 0.5
    elif np.issubdtype(np_dt, np.integer):
        info = np.iinfo(np_dt)
        x = rng.integers(info.min, info.max, size=(3, 4, 5), dtype=np_dt, endpoint=True)
    else:
        x = (rng.standard_normal((3, 4, 5)) * 100).astype(np_dt)
    identity_model(tmp_path / "m.onnx", elem)
    np.save(tmp_path / "x.npy", x)
    p = run("run", tmp_path / "m.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    y = np.load(tmp_path / "o" / "y.npy")
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("shape", [(), (0,), (7,), (2, 0, 3), (1, 1, 1, 1, 1, 1)])
def test_npy_shapes(tmp_path, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    identity_model(tmp_path / "m.onnx", TensorProto.FLOAT)
    np.save(tmp_path / "x.npy", x)
    p = run("run", tmp_path / "m.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, x)


def test_strings_as_numpy_unicode(tmp_path):
    x = np.array([["héllo", "wörld", ""], ["tern", "ONNX ✓", "a"]])
    identity_model(tmp_path / "m.onnx", TensorProto.STRING)
    np.save(tmp_path / "x.npy", x)
    p = run("run", tmp_path / "m.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype.kind == "U"
    np.testing.assert_array_equal(y, x)


def test_output_names_are_sanitised(tmp_path):
    identity_model(tmp_path / "m.onnx", TensorProto.FLOAT, out_name="out/put:0 x")
    np.save(tmp_path / "x.npy", np.ones(3, np.float32))
    p = run("run", tmp_path / "m.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "d")
    assert p.returncode == 0, p.stderr
    assert os.listdir(tmp_path / "d") == ["out_put_0_x.npy"]


def test_repeat_prints_json_stats(tmp_path):
    identity_model(tmp_path / "m.onnx", TensorProto.FLOAT)
    np.save(tmp_path / "x.npy", np.ones(1000, np.float32))
    p = run("run", tmp_path / "m.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path,
            "--repeat", "15", "--threads", "2")
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout.strip().splitlines()[-1])
    assert stats["runs"] == 15
    assert 0 <= stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"]


def test_bad_flags(tmp_path):
    identity_model(tmp_path / "m.onnx", TensorProto.FLOAT)
    for args in (["--repeat", "0"], ["--threads", "x"], ["--input", "novalue"], ["--bogus"]):
        p = run("run", tmp_path / "m.onnx", *args)
        assert p.returncode != 0 and p.returncode < 128
        assert "Sanitizer" not in p.stderr


def test_check_lists_io_and_ops(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softmax", ["r"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    save(m, str(tmp_path / "m.onnx"))
    p = run("check", tmp_path / "m.onnx")
    assert p.returncode == 0, p.stderr
    assert "[batch, 4]" in p.stdout          # symbolic dim kept by name
    assert "ai.onnx              17" in p.stdout
    assert "Relu" in p.stdout and "Softmax" in p.stdout and "UNSUPPORTED" not in p.stdout
    # y has no declared shape: inference gives it [batch, 4]
    lines = [l for l in p.stdout.splitlines() if l.split()[:2] == ["output", "y"]]
    assert lines and "[batch, 4]" in lines[0], p.stdout


def test_ops_lists_registry():
    p = run("ops")
    assert p.returncode == 0
    ops = {l.split()[1] for l in p.stdout.splitlines()}
    assert {"Conv", "MatMul", "Loop", "Resize", "LSTM"} <= ops


def test_example_program(tmp_path):
    identity_model(tmp_path / "m.onnx", TensorProto.FLOAT, shape=["N", 3])
    p = subprocess.run([EXAMPLE, str(tmp_path / "m.onnx"), "4"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "output y: float32, 12 elements" in p.stdout
