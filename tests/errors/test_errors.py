"""Bad models and bad calls: each must give one clear line on stderr naming the
problem and a non-zero exit, never a crash or a sanitizer report.

Models are built with the onnx Python package (Debian's python3-onnx), the
reference for what a valid model is; the defects are then applied to them.
Run with TERN_BIN pointing at the tern binary (ctest sets it)."""
import os
import random
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

TERN = os.environ.get("TERN_BIN", "build/tern")


def run(*args):
    p = subprocess.run([TERN, *map(str, args)], capture_output=True, text=True, timeout=120)
    return p


def assert_clean_error(p, *needles):
    assert p.returncode != 0, p.stdout + p.stderr
    assert p.returncode < 128, "killed by a signal: " + p.stderr
    err = p.stderr.strip()
    lines = err.splitlines()
    assert len(lines) == 1, "expected one line, got:\n" + err
    assert lines[0].startswith("tern: error: "), err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    for bad in ("AddressSanitizer", "runtime error", "LeakSanitizer"):
        assert bad not in err


def add_model(opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    n = helper.make_node("Add", ["x", "w"], ["y"], name="add0")
    g = helper.make_graph([n], "g", [x], [y], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def save(model, tmp_path, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def test_valid_model_runs(tmp_path):
    """The baseline the defects below are applied to runs and is right."""
    m = save(add_model(), tmp_path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "x.npy", x)
    p = run("run", m, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "y.npy"), x + 1)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.1])
def test_truncated_model(tmp_path, cut):
    data = add_model().SerializeToString()
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: int(len(data) * cut)])
    assert_clean_error(run("check", p), "t.onnx")
    assert_clean_error(run("run", p), "t.onnx")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    rnd = random.Random(seed)
    p = tmp_path / "r.onnx"
    p.write_bytes(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4096))))
    assert_clean_error(run("run", p), "r.onnx")


def test_empty_file(tmp_path):
    p = tmp_path / "e.onnx"
    p.write_bytes(b"")
    assert_clean_error(run("check", p), "empty")


def test_missing_file(tmp_path):
    assert_clean_error(run("run", tmp_path / "nope.onnx"), "nope.onnx")


def test_unknown_op(tmp_path):
    m = add_model()
    m.graph.node[0].op_type = "FrobnicateTensor"
    p = save(m, tmp_path)
    assert_clean_error(run("run", p), "add0", "FrobnicateTensor")
    c = run("check", p)
    assert c.returncode == 1
    assert "FrobnicateTensor" in c.stdout and "UNSUPPORTED" in c.stdout


def test_unsupported_opset(tmp_path):
    p = save(add_model(opset=99), tmp_path)
    assert_clean_error(run("run", p), "add0", "opset 99")


def test_initializer_size_mismatch(tmp_path):
    m = add_model()
    m.graph.initializer[0].raw_data = b"\0" * 12  # shape [2,3] float needs 24
    p = save(m, tmp_path)
    assert_clean_error(run("run", p), "initializer 'w'", "12 bytes", "24")


def test_initializer_typed_count_mismatch(tmp_path):
    m = add_model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.float_data.extend([1.0] * 5)
    p = save(m, tmp_path)
    assert_clean_error(run("run", p), "initializer 'w'", "float_data")


def test_cycle(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    n1 = helper.make_node("Add", ["x", "b"], ["a"], name="n1")
    n2 = helper.make_node("Relu", ["a"], ["b"], name="n2")
    n3 = helper.make_node("Identity", ["a"], ["y"], name="n3")
    g = helper.make_graph([n1, n2, n3], "loop", [x], [y])
    p = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path)
    assert_clean_error(run("run", p), "cycle")


def test_undefined_input_name(tmp_path):
    m = add_model()
    m.graph.node[0].input[1] = "nowhere"
    p = save(m, tmp_path)
    assert_clean_error(run("run", p), "add0", "nowhere")


def test_missing_input(tmp_path):
    p = save(add_model(), tmp_path)
    assert_clean_error(run("run", p, "--output-dir", tmp_path), "missing input 'x'")


def test_wrong_input_name(tmp_path):
    p = save(add_model(), tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    assert_clean_error(run("run", p, "--input", f"z={tmp_path / 'x.npy'}"), "'z'")


def test_wrong_input_dtype_and_shape(tmp_path):
    p = save(add_model(), tmp_path)
    np.save(tmp_path / "i.npy", np.zeros((2, 3), np.int64))
    assert_clean_error(run("run", p, "--input", f"x={tmp_path / 'i.npy'}"), "input 'x'", "int64")
    np.save(tmp_path / "s.npy", np.zeros((3, 2), np.float32))
    assert_clean_error(run("run", p, "--input", f"x={tmp_path / 's.npy'}"), "input 'x'", "shape")


def test_corrupt_npy(tmp_path):
    p = save(add_model(), tmp_path)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'")
    assert_clean_error(run("run", p, "--input", f"x={tmp_path / 'bad.npy'}"), "bad.npy")


def test_external_data_outside_folder(tmp_path):
    m = add_model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "../../etc/passwd"
    p = save(m, tmp_path)
    assert_clean_error(run("run", p), "leaves the model folder")


def test_external_data_roundtrip(tmp_path):
    """Weights in an external file (as large models are saved) load by mmap."""
    m = add_model()
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    onnx.save_model(m, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    x = np.ones((2, 3), np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run("run", tmp_path / "ext.onnx", "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), x + w)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)  # now too short
    assert_clean_error(run("run", tmp_path / "ext.onnx", "--input", f"x={tmp_path / 'x.npy'}"), "too short")
