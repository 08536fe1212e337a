"""`tern infer`, the CLI client, against a running server: outputs written
with --output-dir compared with numpy, in JSON and --binary form, for
several datatypes and a two-output model; printed outputs; errors from the
server reported on stderr with a non-zero exit."""
import subprocess

import numpy as np
import pytest

from conftest import TERN, Server
from servemodels import DATATYPES, add_model, identity_model, mlp_model, mlp_reference, save, two_output_model


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    save(two_output_model(), repo / "two" / "1" / "model.onnx")
    save(mlp_model(), repo / "mlp" / "1" / "model.onnx")
    save(add_model(DATATYPES["INT32"][1], np.int32), repo / "add_i32" / "1" / "model.onnx")
    for name in ("BOOL", "INT8", "UINT64", "FP16", "FP64", "BYTES"):
        save(identity_model(DATATYPES[name][1], ["a", "b"]), repo / f"id_{name.lower()}" / "1" / "model.onnx")
    s = Server(repo, [], log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


def infer(srv, model, inputs, tmp_path, *extra):
    args = [TERN, "infer", model, "--url", srv.url]
    for name, a in inputs.items():
        f = tmp_path / f"in_{name}.npy"
        np.save(f, a)
        args += ["--input", f"{name}={f}"]
    args += [str(e) for e in extra]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    for bad in ("AddressSanitizer", "runtime error", "LeakSanitizer"):
        assert bad not in p.stderr, p.stderr
    return p


BINARY = [[], ["--binary"]]


@pytest.mark.parametrize("extra", BINARY, ids=["json", "binary"])
def test_two_outputs(srv, tmp_path, extra):
    x = np.array([[1.5, -2.0, 3.25], [0.1, 0.2, 1e-8]], np.float32)
    p = infer(srv, "two", {"x": x}, tmp_path, "--output-dir", tmp_path / "out", *extra)
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "sum.npy"), x + np.float32(1))
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "prod.npy"), x * np.float32(2))
    assert np.load(tmp_path / "out" / "sum.npy").dtype == np.float32


@pytest.mark.parametrize("extra", BINARY, ids=["json", "binary"])
def test_mlp(srv, tmp_path, extra):
    x = np.random.default_rng(5).random((4, 784), dtype=np.float32)
    p = infer(srv, "mlp", {"x": x}, tmp_path, "--output-dir", tmp_path, *extra)
    assert p.returncode == 0, p.stderr
    got = np.load(tmp_path / "probs.npy")
    assert got.shape == (4, 10)
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("extra", BINARY, ids=["json", "binary"])
def test_two_inputs(srv, tmp_path, extra):
    a = np.array([[1, -2, 3], [2**30, 0, -7]], np.int32)
    b = np.array([[10, 20, 30], [1, 2, 3]], np.int32)
    p = infer(srv, "add_i32", {"a": a, "b": b}, tmp_path, "--output-dir", tmp_path, *extra)
    assert p.returncode == 0, p.stderr
    c = np.load(tmp_path / "c.npy")
    assert c.dtype == np.int32
    np.testing.assert_array_equal(c, a + b)


def sample(name):
    rng = np.random.default_rng(11)
    if name == "BOOL":
        return rng.random((2, 5)) > 0.5
    if name == "BYTES":
        return np.array([["héllo", "", "tern"], ["a", "ONNX ✓", "xyz"]])
    dt = DATATYPES[name][0]
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=(2, 5), dtype=dt, endpoint=True)
        if name == "UINT64":
            a //= 2  # JSON integers up to 2**63 - 1, whatever the client's JSON library
        return a
    return (rng.standard_normal((2, 5)) * 100).astype(dt)


@pytest.mark.parametrize("extra", BINARY, ids=["json", "binary"])
@pytest.mark.parametrize("name", ["BOOL", "INT8", "UINT64", "FP16", "FP64", "BYTES"])
def test_datatypes(srv, tmp_path, name, extra):
    x = sample(name)
    p = infer(srv, f"id_{name.lower()}", {"x": x}, tmp_path, "--output-dir", tmp_path, *extra)
    assert p.returncode == 0, p.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == x.shape
    if name == "BYTES":
        assert y.dtype.kind in "US"
        assert [str(v) if y.dtype.kind == "U" else v.decode() for v in y.reshape(-1)] == list(x.reshape(-1))
    else:
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(y, x)


def test_prints_outputs(srv, tmp_path):
    x = np.array([[1, 2, 3]], np.float32)
    p = infer(srv, "two", {"x": x}, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "sum" in p.stdout and "prod" in p.stdout
    assert "6" in p.stdout  # prod of 3 is printed


def test_server_error_is_reported(srv, tmp_path):
    x = np.zeros((2, 4), np.float32)  # the model wants [-1, 3]
    p = infer(srv, "two", {"x": x}, tmp_path, "--output-dir", tmp_path)
    assert p.returncode != 0
    assert p.returncode < 128
    assert "400" in p.stderr or "'x'" in p.stderr, p.stderr
    p = infer(srv, "ghost", {"x": x}, tmp_path)
    assert p.returncode != 0 and "ghost" in p.stderr


def test_no_server(tmp_path):
    from conftest import free_port
    np.save(tmp_path / "x.npy", np.zeros(3, np.float32))
    p = subprocess.run([TERN, "infer", "two", "--url", f"http://127.0.0.1:{free_port()}",
                        "--input", f"x={tmp_path / 'x.npy'}"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and p.returncode < 128
    assert p.stderr.strip()
