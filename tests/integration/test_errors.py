"""Every error status with its message: a JSON body {"error": "..."} that
names the field, input, model or limit at fault.

400 malformed body, wrong datatype, shape and data disagree, unknown or
    missing input, unknown requested output, bad binary sizes, element limit
    (and inputs a kernel refuses at run time)
404 unknown model, version or route
413 body over --max-body-bytes
503 model known but not ready
500 the engine running out of memory (under an address-space limit)
"""
import json
import resource

import numpy as np
import pytest
import requests

import v2
from conftest import Server, make_tagged_repo, sanitized
from servemodels import OPSET, save, two_output_model
from onnx import TensorProto, helper, numpy_helper


def reshape_model():
    """x FP32 [-1] reshaped to [2, 3]: valid for 6 elements, a run-time
    engine failure for any other count."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    shape = numpy_helper.from_array(np.array([2, 3], np.int64), "shape")
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "r", [x], [y], [shape])
    return helper.make_model(g, opset_imports=OPSET)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    save(two_output_model(), repo / "two" / "1" / "model.onnx")
    save(reshape_model(), repo / "reshape" / "1" / "model.onnx")
    make_tagged_repo(repo, "idle", [1])
    s = Server(repo, ["--model-control-mode", "explicit", "--load-model", "two", "--load-model", "reshape",
                      "--max-body-bytes", "65536", "--max-tensor-elements", "1000"],
               log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


def inp(**kw):
    d = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    d.update(kw)
    return d


def expect(r, status, *needles):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    msg = v2.error_of(r)
    for n in needles:
        assert n in msg, f"{n!r} not in error message {msg!r}"
    return msg


# -- 400 ------------------------------------------------------------------------

BAD_BODIES = {
    "not_json": (b"this is not json", ["JSON"]),
    "truncated_json": (b'{"inputs": [{"name": "x", "shape": [1, 3], "datat', ["JSON"]),
    "empty_body": (b"", []),
    "array_body": (b"[]", []),
    "no_inputs": (b'{"outputs": []}', ["inputs"]),
    "inputs_not_array": (b'{"inputs": {"name": "x"}}', ["inputs"]),
    "input_not_object": (b'{"inputs": [5]}', ["inputs[0]"]),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_400_malformed(srv, case):
    body, needles = BAD_BODIES[case]
    r = srv.post("/v2/models/two/infer", data=body, headers={"Content-Type": "application/json"})
    expect(r, 400, *needles)


BAD_INPUTS = {
    "wrong_datatype": (inp(datatype="FP64"), ["x", "FP64"]),
    "unknown_datatype": (inp(datatype="FP33"), ["FP33"]),
    "datatype_not_string": (inp(datatype=7), ["datatype"]),
    "too_few_data": (inp(data=[1, 2]), ["x", "2", "3"]),
    "too_many_data": (inp(data=[1, 2, 3, 4]), ["x", "4", "3"]),
    "nested_ragged": (inp(shape=[2, 3], data=[[1, 2, 3], [4, 5]]), ["x"]),
    "wrong_rank": (inp(shape=[3], data=[1, 2, 3]), ["x"]),
    "wrong_dim": (inp(shape=[1, 4], data=[1, 2, 3, 4]), ["x"]),
    "negative_dim": (inp(shape=[-1, 3], data=[1, 2, 3]), ["shape"]),
    "shape_not_ints": (inp(shape=["a", 3]), ["shape"]),
    "shape_missing": ({"name": "x", "datatype": "FP32", "data": [1, 2, 3]}, ["shape"]),
    "name_missing": ({"shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, ["name"]),
    "data_missing": ({"name": "x", "shape": [1, 3], "datatype": "FP32"}, ["x"]),
    "string_data": (inp(data=["a", "b", "c"]), ["x"]),
    "object_data": (inp(data=[{"v": 1}, 2, 3]), ["x"]),
    "null_data": (inp(data=[None, 2, 3]), ["x"]),
    "bool_data_for_fp32": (inp(data=[True, False, True]), ["x"]),
    "unknown_input": (inp(name="q"), ["q"]),
    "too_many_elements": (inp(shape=[400, 3], data=[0.0] * 1200), ["x"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_400_bad_input(srv, case):
    entry, needles = BAD_INPUTS[case]
    expect(srv.infer("two", {"inputs": [entry]}), 400, *needles)


def test_400_duplicate_input(srv):
    expect(srv.infer("two", {"inputs": [inp(), inp()]}), 400, "x")


def test_400_missing_input(srv, tmp_path):
    r = srv.infer("two", {"inputs": []})
    expect(r, 400, "x")


def test_400_unknown_output(srv):
    expect(srv.infer("two", {"inputs": [inp()], "outputs": [{"name": "nope"}]}), 400, "nope")


@pytest.mark.parametrize("value,dt", [(300, "INT8"), (-1, "UINT8"), (1.5, "INT32"), (2**64, "INT64")])
def test_400_integer_out_of_range(tmp_path, serve, value, dt):
    from servemodels import DATATYPES, identity_model
    save(identity_model(DATATYPES[dt][1], [1]), tmp_path / "repo" / "m" / "1" / "model.onnx")
    s = serve(tmp_path / "repo")
    r = s.infer("m", {"inputs": [{"name": "x", "shape": [1], "datatype": dt, "data": [value]}]})
    # 2**64 is beyond what the JSON parser holds: the whole body is refused
    expect(r, 400, *(["'x'"] if value != 2**64 else []))


def binary_post(srv, header, tail, hlen=None, model="two"):
    hj = json.dumps(header).encode()
    return srv.post(f"/v2/models/{model}/infer", data=hj + tail,
                    headers={"Inference-Header-Content-Length": str(len(hj) if hlen is None else hlen),
                             "Content-Type": "application/octet-stream"})


def test_400_binary_size_mismatch(srv):
    x = np.ones((1, 3), np.float32)
    # binary_data_size disagrees with the shape
    h = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    expect(binary_post(srv, h, x.tobytes()[:8]), 400, "x")
    # more binary data than the inputs claim
    h = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}
    expect(binary_post(srv, h, x.tobytes() + b"\0\0\0\0"), 400)
    # less than they claim
    expect(binary_post(srv, h, x.tobytes()[:10]), 400, "x")


def test_400_binary_header_length(srv):
    h = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}
    tail = np.ones(3, np.float32).tobytes()
    hlen = len(json.dumps(h))
    for bad in (hlen + 100, -5, "abc", hlen - 3, 0):
        r = binary_post(srv, h, tail, hlen=bad)
        expect(r, 400)


def test_400_binary_size_not_int(srv):
    h = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": "12"}}]}
    expect(binary_post(srv, h, np.ones(3, np.float32).tobytes()), 400, "binary_data_size")


def test_400_bytes_binary_bad_lengths(tmp_path, serve):
    from servemodels import DATATYPES, identity_model
    save(identity_model(DATATYPES["BYTES"][1], [2]), tmp_path / "repo" / "s" / "1" / "model.onnx")
    s = serve(tmp_path / "repo")
    # second element's length prefix points past the end
    tail = b"\x02\x00\x00\x00ab" + b"\xff\x00\x00\x00cd"
    h = {"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(tail)}}]}
    expect(binary_post(s, h, tail, model="s"), 400, "x")
    # one element too few
    tail = b"\x02\x00\x00\x00ab"
    h["inputs"][0]["parameters"]["binary_data_size"] = len(tail)
    expect(binary_post(s, h, tail, model="s"), 400, "x")
    s.assert_alive()


# -- 404 ------------------------------------------------------------------------

@pytest.mark.parametrize("path,needle", [
    ("/v2/models/ghost/infer", "ghost"),
    ("/v2/models/two/versions/9/infer", "9"),
    ("/v2/models/ghost/versions/1/infer", "ghost"),
])
def test_404_infer(srv, path, needle):
    expect(srv.post(path, json={"inputs": [inp()]}), 404, needle)


@pytest.mark.parametrize("path", ["/v2/models/ghost", "/v2/models/ghost/ready", "/v2/models/ghost/config",
                                  "/v2/models/ghost/stats", "/v2/models/two/versions/9"])
def test_404_get(srv, path):
    r = srv.get(path)
    assert r.status_code == 404, r.text
    if not path.endswith("/ready"):
        expect(r, 404, "ghost" if "ghost" in path else "9")


def test_404_route(srv):
    r = srv.get("/v2/nothing/here")
    assert r.status_code == 404


def test_404_bad_version_string(srv):
    for v in ("abc", "-1", "0", "1.5", "99999999999999999999999"):
        r = srv.post(f"/v2/models/two/versions/{v}/infer", json={"inputs": [inp()]})
        assert r.status_code in (400, 404), (v, r.status_code)
        v2.error_of(r)


# -- 413 ------------------------------------------------------------------------

def test_413_body_over_limit(srv):
    n = 20000  # ~ 100 KB of JSON, limit is 64 KB
    r = srv.infer("two", {"inputs": [inp(shape=[n // 3, 3], data=[1.0] * (n // 3 * 3))]})
    expect(r, 413)
    # binary body over the limit
    raw = np.zeros(70000 // 4, np.float32).tobytes()
    h = {"inputs": [{"name": "x", "shape": [len(raw) // 12, 3], "datatype": "FP32",
                     "parameters": {"binary_data_size": len(raw)}}]}
    expect(binary_post(srv, h, raw), 413)
    # and the server still answers
    assert srv.infer("two", {"inputs": [inp()]}).status_code == 200


def test_413_chunked_body_over_limit(srv):
    def gen():
        yield b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3'
        for _ in range(100):
            yield b", 0" * 500
        yield b"]}]}"
    r = requests.post(srv.url + "/v2/models/two/infer", data=gen(), timeout=30)
    expect(r, 413)


# -- 503 ------------------------------------------------------------------------

def test_503_not_ready(srv):
    expect(srv.infer("idle", {"inputs": [inp(shape=[3])]}), 503, "idle", "not ready")
    r = srv.get("/v2/models/idle/ready")
    assert r.status_code == 400


# -- 500 ------------------------------------------------------------------------

def constant_of_shape_model():
    """x INT64 [2] -> zeros of shape x: the request chooses the output size."""
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("ConstantOfShape", ["x"], ["y"])], "cos", [x], [y])
    return helper.make_model(g, opset_imports=OPSET)


@pytest.mark.skipif(sanitized(), reason="ASan's allocator does not honour RLIMIT_AS")
def test_500_out_of_memory(serve, tmp_path):
    """Under a 3 GB address-space limit, a request whose output needs 4 GB gets
    a 500 naming the failure, and the server goes on serving."""
    save(constant_of_shape_model(), tmp_path / "repo" / "cos" / "1" / "model.onnx")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    s = serve(tmp_path / "repo", preexec=limit)
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1 << 16, 1 << 14]}]}
    expect(s.infer("cos", body), 500, "memory")
    body["inputs"][0]["data"] = [2, 3]
    r = s.infer("cos", body)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 3], r.text
    s.assert_alive()


def test_400_engine_refuses_input(srv):
    """An input that fits the metadata but that a kernel refuses at run time is
    the client's error (400), with the node and op in the message."""
    ok = srv.infer("reshape", {"inputs": [{"name": "x", "shape": [6], "datatype": "FP32", "data": list(range(6))}]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["outputs"][0]["shape"] == [2, 3]
    r = srv.infer("reshape", {"inputs": [{"name": "x", "shape": [5], "datatype": "FP32", "data": list(range(5))}]})
    expect(r, 400, "Reshape", "[5]")
    srv.assert_alive()
