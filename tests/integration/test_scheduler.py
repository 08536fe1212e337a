"""The per-version scheduler (src/sched/sched.c) through a real HTTP client:
the delay-based dynamic batcher hands every client exactly its own rows,
an expired deadline is answered 504 without being computed, admission
control refuses (429 + Retry-After) what cannot meet its deadline or does
not fit the queue, priorities are served in order without starving the
lower level, and the statistics and /metrics report it all (batch sizes,
rejections by reason, SLO compliance)."""
import concurrent.futures
import threading
import time

import numpy as np
import requests
from onnx import TensorProto, helper, numpy_helper

from conftest import SLOW, make_tagged_repo, steps_for, wait_for
from servemodels import save
from test_batching import body, linear_model


def model_stats(srv, model):
    return srv.get(f"/v2/models/{model}/stats").json()["model_stats"][0]


def tagged_body(x, **params):
    b = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [float(x)]}],
         "outputs": [{"name": "y"}]}
    if params:
        b["parameters"] = params
    return b


def send_async(srv, model, x, results, key, **params):
    """Posts in a thread; results[key] = (status, y or error text, headers, t_done)."""
    def run():
        r = requests.post(f"{srv.url}/v2/models/{model}/infer", json=tagged_body(x, **params),
                          timeout=120 * SLOW)
        y = r.json()["outputs"][0]["data"][0] if r.status_code == 200 else r.text
        results[key] = (r.status_code, y, r.headers, time.monotonic())
    t = threading.Thread(target=run)
    t.start()
    return t


def wait_queue(srv, model, running=None, depth=None):
    def ok():
        q = model_stats(srv, model)["queue"]
        return (running is None or q["running"] == running) and (depth is None or q["depth"] == depth)
    wait_for(ok, timeout=60 * SLOW, period=0.01, what=f"queue running={running} depth={depth}")


def metric(srv, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in srv.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.split()[-1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def test_delay_batcher_gives_each_client_its_rows(serve, tmp_path):
    rng = np.random.default_rng(11)
    w, b = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    (tmp_path / "repo" / "lin" / "1").mkdir(parents=True)
    save(linear_model(w, b), str(tmp_path / "repo" / "lin" / "1" / "model.onnx"))
    (tmp_path / "repo" / "lin" / "config.yaml").write_text(
        "max_batch_size: 32\npreferred_batch_sizes: [8, 16]\nmax_queue_delay_us: 3000\n")
    srv = serve(tmp_path / "repo")
    db = srv.get("/v2/models/lin/config").json()["dynamic_batching"]
    assert db["preferred_batch_size"] == [8, 16] and db["max_queue_delay_microseconds"] == 3000
    # every request is one row whose values are its own: the output reveals it
    xs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(600)]
    with concurrent.futures.ThreadPoolExecutor(48) as ex:
        rs = list(ex.map(lambda x: srv.infer("lin", body(x)), xs))
    for x, r in zip(xs, rs):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 32]
        np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(1, 32), x @ w + b,
                                   rtol=1e-5, atol=1e-5)
    s = model_stats(srv, "lin")
    sizes = {d["batch_size"]: d["compute_infer"]["count"] for d in s["batch_stats"]}
    assert sum(k * v for k, v in sizes.items()) == 600 == s["inference_count"]
    assert sum(sizes.values()) == s["execution_count"]
    assert max(sizes) > 1, f"no batch larger than 1: {sizes}"
    assert max(sizes) <= 32
    # a request of more rows than max_batch_size is refused, as Triton does
    r = srv.infer("lin", body(rng.standard_normal((40, 64)).astype(np.float32)))
    assert r.status_code == 400 and "max_batch_size 32" in r.json()["error"], r.text
    # the batch-size histogram in /metrics agrees with the statistics
    assert metric(srv, "tern_batch_size_count", model="lin") == s["execution_count"]
    assert metric(srv, "tern_batch_size_sum", model="lin") == 600
    srv.assert_clean()


def rowsum_model():
    """x FP32 [N, M] (M dynamic) -> y [N, 1], the sum of each row."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    g = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
                          "rowsum", [x], [y], [axes])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_shapes_that_differ_beyond_the_batch_dim_never_share_a_batch(serve, tmp_path):
    (tmp_path / "repo" / "rowsum" / "1").mkdir(parents=True)
    save(rowsum_model(), str(tmp_path / "repo" / "rowsum" / "1" / "model.onnx"))
    (tmp_path / "repo" / "rowsum" / "config.yaml").write_text(
        "max_batch_size: 16\nmax_queue_delay_us: 3000\n")
    srv = serve(tmp_path / "repo")
    rng = np.random.default_rng(12)
    # rows of 3 and of 5 values interleaved: concatenating them would be
    # wrong sums (or, in the ASan build, an overflow)
    xs = [rng.standard_normal((1, 3 + 2 * (i % 2))).astype(np.float32) for i in range(300)]
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        rs = list(ex.map(lambda x: srv.infer("rowsum", body(x)), xs))
    for x, r in zip(xs, rs):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 1]
        np.testing.assert_allclose(out["data"][0], x.sum(), rtol=1e-5, atol=1e-5)
    sizes = {d["batch_size"]: d["compute_infer"]["count"]
             for d in model_stats(srv, "rowsum")["batch_stats"]}
    assert max(sizes) > 1, f"nothing was batched: {sizes}"
    srv.assert_clean()


def test_expired_deadline_504_then_admission_429(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "slow", [1], work=steps_for(400))
    srv = serve(tmp_path / "repo")
    res = {}
    # A occupies the only instance; B (50 ms timeout) is queued behind it.
    # Nothing has been measured yet, so admission lets B in and its deadline
    # passes in the queue.
    ta = send_async(srv, "slow", 1, res, "A")
    wait_queue(srv, "slow", running=1)
    tb = send_async(srv, "slow", 2, res, "B", timeout=50000)
    ta.join()
    tb.join()
    assert res["A"][:2] == (200, 2.0)
    status, err, _, t_b = res["B"]
    assert status == 504, err
    assert "deadline passed" in err
    # answered at its deadline, not when the 400 ms run in front of it ended
    assert t_b + 0.1 < res["A"][3], "the 504 waited for the run in front of it"
    s = model_stats(srv, "slow")
    assert s["execution_count"] == 1, "the expired request was computed"
    assert s["queue"]["rejected"]["timeout"] == 1

    # Now a run has been observed (~400 ms): C occupies the instance and D,
    # which allows 50 ms, is refused at once with a Retry-After.
    tc = send_async(srv, "slow", 3, res, "C")
    wait_queue(srv, "slow", running=1)
    t0 = time.monotonic()
    r = requests.post(f"{srv.url}/v2/models/slow/infer", json=tagged_body(4, timeout=50000),
                      timeout=60 * SLOW)
    took = time.monotonic() - t0
    tc.join()
    assert r.status_code == 429, r.text
    assert "deadline cannot be met" in r.json()["error"]
    assert int(r.headers["Retry-After"]) >= 1
    assert took < 0.3 * SLOW, f"the refusal took {took:.3f} s: it should not wait in the queue"
    assert res["C"][:2] == (200, 4.0)
    s = model_stats(srv, "slow")
    assert s["execution_count"] == 2, "a refused request was computed"
    assert s["queue"]["rejected"]["deadline_unmeetable"] == 1
    assert metric(srv, "tern_rejected_requests_total", model="slow", reason="timeout") == 1
    assert metric(srv, "tern_rejected_requests_total", model="slow",
                  reason="deadline_unmeetable") == 1
    srv.assert_clean()


def test_model_default_timeout(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "slow", [1], work=steps_for(300),
                     config="default_timeout_us: 40000\n")
    srv = serve(tmp_path / "repo")
    res = {}
    # the model's default applies to a request without its own timeout; a
    # request's own (larger) timeout wins over it
    ta = send_async(srv, "slow", 1, res, "A", timeout=60000000)
    wait_queue(srv, "slow", running=1)
    tb = send_async(srv, "slow", 2, res, "B")
    ta.join()
    tb.join()
    assert res["A"][0] == 200
    assert res["B"][0] == 504, res["B"][1]
    srv.assert_clean()


def test_full_queue_429_and_slo(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "slow", [1], work=steps_for(300),
                     config="max_queue_size: 2\nslo: {latency_p99_ms: 100000, availability: 0.99}\n")
    srv = serve(tmp_path / "repo")
    res = {}
    ts = [send_async(srv, "slow", 1, res, "A")]
    wait_queue(srv, "slow", running=1)
    ts += [send_async(srv, "slow", 2, res, "B"), send_async(srv, "slow", 3, res, "C")]
    wait_queue(srv, "slow", depth=2)
    r = requests.post(f"{srv.url}/v2/models/slow/infer", json=tagged_body(9), timeout=60 * SLOW)
    assert r.status_code == 429, r.text
    assert "queue is full" in r.json()["error"] and "max_queue_size 2" in r.json()["error"]
    assert int(r.headers["Retry-After"]) >= 1
    for t in ts:
        t.join()
    assert [res[k][:2] for k in "ABC"] == [(200, 2.0), (200, 3.0), (200, 4.0)]
    s = model_stats(srv, "slow")
    assert s["execution_count"] == 3
    assert s["queue"]["rejected"]["queue_full"] == 1
    slo = s["slo"]
    # 3 answered, 1 refused: availability 0.75 misses 0.99; latency is well inside
    assert slo["requests"] == 4 and slo["succeeded"] == 3
    assert abs(slo["observed_availability"] - 0.75) < 1e-9
    assert slo["availability_compliant"] is False
    assert slo["latency_compliant"] is True
    assert slo["compliant"] is False
    assert 0 < slo["observed_latency_p99_ms"] < 100000
    assert metric(srv, "tern_slo_compliant", model="slow") == 0
    assert abs(metric(srv, "tern_slo_availability", model="slow") - 0.75) < 1e-6
    srv.assert_clean()


def test_priorities_in_order_without_starvation(serve, tmp_path):
    # each run lasts long enough that all 12 requests are queued while the
    # first one runs
    make_tagged_repo(tmp_path / "repo", "slow", [1], work=steps_for(300),
                     config="priority_levels: 2\ndefault_priority_level: 2\n")
    srv = serve(tmp_path / "repo")
    res = {}
    ts = [send_async(srv, "slow", 0, res, "first")]
    wait_queue(srv, "slow", running=1)
    ts += [send_async(srv, "slow", 100 + i, res, f"L{i}") for i in range(6)]  # default: low
    wait_queue(srv, "slow", running=1, depth=6)
    ts += [send_async(srv, "slow", 200 + i, res, f"H{i}", priority=1) for i in range(6)]
    wait_queue(srv, "slow", running=1, depth=12)
    for t in ts:
        t.join()
    assert all(v[0] == 200 for v in res.values()), res
    assert all(res[k][1] == float(100 + int(k[1:]) + 1) for k in res if k[0] == "L")
    order = "".join(k[0] for k, _ in sorted(res.items(), key=lambda kv: kv[1][3]) if k != "first")
    # the high level first; after 4 high batches in a row the waiting low
    # level gets one (its share), then the rest of the high, then the low
    assert order == "HHHHLHHLLLLL", order


def test_bad_priority_and_config(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "m", [1], config="priority_levels: 3\n")
    make_tagged_repo(tmp_path / "repo", "bad", [1],
                     config="max_batch_size: 4\npreferred_batch_sizes: [2, 8]\n")
    srv = serve(tmp_path / "repo", wait_ready=False)
    wait_for(lambda: srv.get("/v2/models/m/ready").status_code == 200, timeout=60 * SLOW,
             what="model m ready")
    r = srv.infer("m", tagged_body(1, priority=4))
    assert r.status_code == 400
    assert "parameters.priority" in r.json()["error"] and "between 1 and 3" in r.json()["error"]
    r = srv.infer("m", tagged_body(1, priority="high"))
    assert r.status_code == 400 and "parameters.priority" in r.json()["error"]
    assert srv.infer("m", tagged_body(1, priority=3)).status_code == 200
    idx = {e["name"]: e for e in srv.index()}
    assert idx["bad"]["state"] == "UNAVAILABLE"
    assert "preferred_batch_sizes[1]: 8 is over max_batch_size 4" in idx["bad"]["reason"]
    srv.assert_clean()
