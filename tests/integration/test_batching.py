"""Opportunistic batching: a version whose config.yaml sets max_batch_size
has its queued requests of the same shape run as one batch. Every client
must still get exactly its own rows (checked against numpy per request),
the statistics must show fewer executions than inferences, and a model
whose output has no batch dimension must fall back to one run per request
without a wrong answer."""
import concurrent.futures

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from conftest import make_tagged_repo  # noqa: F401  (fixtures live in conftest)
from servemodels import save

OPSET = [helper.make_opsetid("", 13)]


def linear_model(w, b):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", w.shape[1]])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    g = helper.make_graph(nodes, "lin", [x], [y],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=OPSET)


def total_model():
    """y = sum of all of x: no batch dimension in the output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    g = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "tot", [x], [y])
    return helper.make_model(g, opset_imports=OPSET)


def body(x):
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}


def hammer(srv, model, xs):
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        return list(ex.map(lambda x: srv.infer(model, body(x)), xs))


def stats(srv, model):
    s = srv.get(f"/v2/models/{model}/stats").json()["model_stats"][0]
    return s["inference_count"], s["execution_count"]


def test_batched_requests_get_their_own_rows(serve, tmp_path):
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    (tmp_path / "repo" / "lin" / "1").mkdir(parents=True)
    save(linear_model(w, b), str(tmp_path / "repo" / "lin" / "1" / "model.onnx"))
    (tmp_path / "repo" / "lin" / "config.yaml").write_text("max_batch_size: 16\n")
    srv = serve(tmp_path / "repo")
    # rows 1..3 per request, so batches mix request sizes
    xs = [rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(400)]
    rs = hammer(srv, "lin", xs)
    for x, r in zip(xs, rs):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [x.shape[0], 32]
        np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(out["shape"]),
                                   x @ w + b, rtol=1e-5, atol=1e-5)
    inferences, executions = stats(srv, "lin")
    # Triton counts inferences as rows and executions as runs
    assert inferences == sum(x.shape[0] for x in xs)
    assert executions < 400, "no request was batched"
    srv.assert_clean()


def test_output_without_batch_dim_falls_back(serve, tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "repo" / "tot" / "1").mkdir(parents=True)
    save(total_model(), str(tmp_path / "repo" / "tot" / "1" / "model.onnx"))
    (tmp_path / "repo" / "tot" / "config.yaml").write_text("max_batch_size: 8\n")
    srv = serve(tmp_path / "repo")
    xs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(200)]
    for x, r in zip(xs, hammer(srv, "tot", xs)):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"][0]["data"][0], x.sum(), rtol=1e-5, atol=1e-5)
    inferences, executions = stats(srv, "tot")
    assert executions == 200 and inferences == 400  # 2 rows each, every one run alone
    srv.assert_clean()


def test_no_batching_without_max_batch_size(serve, tmp_path):
    rng = np.random.default_rng(5)
    w, b = rng.standard_normal((8, 2)).astype(np.float32), np.zeros(2, np.float32)
    (tmp_path / "repo" / "lin" / "1").mkdir(parents=True)
    save(linear_model(w, b), str(tmp_path / "repo" / "lin" / "1" / "model.onnx"))
    srv = serve(tmp_path / "repo")
    xs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(100)]
    assert all(r.status_code == 200 for r in hammer(srv, "lin", xs))
    inferences, executions = stats(srv, "lin")
    assert inferences == executions == 100
