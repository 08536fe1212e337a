"""A round trip of every KServe datatype through an Identity model, in JSON,
in binary and mixed, with values from each type's whole range; and Add per
numeric type against numpy, with one input binary and the other JSON."""
import numpy as np
import pytest

import v2
from conftest import Server
from servemodels import DATATYPES, add_model, identity_model, save

NUMERIC = [k for k in DATATYPES if k not in ("BOOL", "BYTES")]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name, (_, elem) in DATATYPES.items():
        save(identity_model(elem, ["a", "b"]), repo / f"id_{name.lower()}" / "1" / "model.onnx")
    for name in NUMERIC:
        np_dt, elem = DATATYPES[name]
        save(add_model(elem, np_dt), repo / f"add_{name.lower()}" / "1" / "model.onnx")
    s = Server(repo, [], log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


def values(name, shape=(3, 4), json_safe=False):
    """Values of a datatype covering its range: extremes, zero, random."""
    rng = np.random.default_rng(sum(map(ord, name)))
    np_dt = DATATYPES[name][0]
    n = int(np.prod(shape))
    if name == "BOOL":
        a = np.array([True, False] * n)[:n]
    elif name == "BYTES":
        words = ["", "a", "tern", "héllo wörld", "ONNX ✓", "quote\"back\\slash", "tab\tnl\n", "x" * 300]
        a = np.array([w.encode() for w in (words * n)[:n]], dtype=object)
    elif np.issubdtype(np_dt, np.integer):
        info = np.iinfo(np_dt)
        a = rng.integers(info.min, info.max, size=n, dtype=np_dt, endpoint=True)
        a[:3] = [info.min, info.max, 0]
    else:
        info = np.finfo(np_dt)
        a = (rng.standard_normal(n) * 100).astype(np_dt)
        a[:5] = [info.max, -info.max, info.tiny, 0, -0.0]
        if n > 5:
            a[5] = np_dt(1) / np_dt(3)
    return a.reshape(shape)


def check_equal(got, want, name):
    assert got.shape == want.shape, name
    if name == "BYTES":
        assert list(got.reshape(-1)) == list(want.reshape(-1))
    else:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        # bitwise, so -0.0 and the last ulp count
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


MODES = {
    "json": dict(binary_inputs=False),
    "binary": dict(binary_inputs=True, binary_output_default=True),
    "binary_in": dict(binary_inputs=True),
    "binary_out": dict(binary_inputs=False, outputs=["y"], binary_outputs={"y"}),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(DATATYPES))
def test_identity_roundtrip(srv, name, mode):
    x = values(name)
    if name == "UINT64" and mode in ("json", "binary_out"):
        # JSON integers above 2**63 get their own test below
        x = x.copy()
        x[x > np.uint64(2**63 - 1)] //= np.uint64(2)
    body, headers = v2.request({"x": x}, rid=f"{name}-{mode}", **MODES[mode])
    r = srv.post(f"/v2/models/id_{name.lower()}/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, binary = v2.decode(r)
    assert header["id"] == f"{name}-{mode}"
    out = header["outputs"][0]
    assert out["datatype"] == name and out["shape"] == [3, 4]
    assert binary["y"] == (mode in ("binary", "binary_out"))
    check_equal(arrays["y"], x, name)


def test_json_uint64_full_range(srv):
    x = np.array([0, 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1], np.uint64)
    body = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "UINT64", "data": [int(v) for v in x]}]}
    r = srv.infer("id_uint64", body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [int(v) for v in x]


def test_json_int64_exact(srv):
    x = [-(2**63), -(2**53) - 1, 2**53 + 1, 2**63 - 1]
    r = srv.infer("id_int64", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": x}]})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == x


def test_bytes_binary_not_utf8(srv):
    x = np.array([b"\xff\xfe", b"", b"\x80abc\x01"], dtype=object).reshape(1, 3)
    body, headers = v2.request({"x": x}, binary_inputs=True, binary_output_default=True)
    r = srv.post("/v2/models/id_bytes/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    _, arrays, _ = v2.decode(r)
    assert list(arrays["y"].reshape(-1)) == list(x.reshape(-1))


def test_bytes_binary_nul(srv):
    """tern strings are NUL-terminated (the engine's choice): an element with a
    NUL byte either round-trips or is refused with a 400 naming the input."""
    x = np.array([b"a\x00b", b"c"], dtype=object).reshape(1, 2)
    body, headers = v2.request({"x": x}, binary_inputs=True, binary_output_default=True)
    r = srv.post("/v2/models/id_bytes/infer", data=body, headers=headers)
    if r.status_code == 200:
        assert list(v2.decode(r)[1]["y"].reshape(-1)) == list(x.reshape(-1))
    else:
        assert r.status_code == 400 and "'x'" in v2.error_of(r), r.text


@pytest.mark.parametrize("shape", [(1, 1), (0, 3), (5, 0), (1, 1000)])
def test_shapes(srv, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for mode in ("json", "binary"):
        body, headers = v2.request({"x": x}, **MODES[mode])
        r = srv.post("/v2/models/id_fp32/infer", data=body, headers=headers)
        assert r.status_code == 200, (mode, r.text)
        _, arrays, _ = v2.decode(r)
        assert arrays["y"].shape == shape
        np.testing.assert_array_equal(arrays["y"], x)


@pytest.mark.parametrize("name", NUMERIC)
def test_add(srv, name):
    np_dt = DATATYPES[name][0]
    rng = np.random.default_rng(3)
    if np.issubdtype(np_dt, np.integer):
        hi = min(int(np.iinfo(np_dt).max) // 2, 10**6)
        lo = 0 if np.iinfo(np_dt).min == 0 else -hi
        a = rng.integers(lo, hi, size=(2, 3)).astype(np_dt)
        b = rng.integers(lo, hi, size=(2, 3)).astype(np_dt)
    else:
        a = (rng.standard_normal((2, 3)) * 10).astype(np_dt)
        b = (rng.standard_normal((2, 3)) * 10).astype(np_dt)
    for bin_names in (set(), {"a"}, {"b"}, {"a", "b"}):
        body, headers = v2.request({"a": a, "b": b}, binary_inputs=bin_names)
        r = srv.post(f"/v2/models/add_{name.lower()}/infer", data=body, headers=headers)
        assert r.status_code == 200, (bin_names, r.text)
        _, arrays, _ = v2.decode(r)
        check_equal(arrays["c"], a + b, name)
