"""Every endpoint of the KServe v2 REST protocol and of Triton's extensions,
in JSON and binary form, checked against the protocol text and numpy:
server metadata and health, model metadata and readiness, inference (flat
and nested data, request id, requested outputs, parameters, binary inputs
and outputs, per-version routing), model config, statistics, the repository
index, and /metrics (also through `promtool check metrics`)."""
import re
import shutil
import subprocess

import numpy as np
import pytest

import v2
from conftest import Server, make_tagged_repo
from servemodels import save, two_output_model


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    save(two_output_model(), repo / "two" / "1" / "model.onnx")
    make_tagged_repo(repo, "tagged", [1, 2, 3], config="version_policy:\n  all: {}\n")
    make_tagged_repo(repo, "stats_m", [1])
    make_tagged_repo(repo, "batched", [1], config="max_batch_size: 8\n")
    s = Server(repo, ["--log-level", "info"], log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


X = np.array([[1.5, -2.25, 3.0], [0.1, 1e-7, -65504.0]], np.float32)


def check_two(header, arrays, x=X):
    assert header["model_name"] == "two"
    assert header["model_version"] == "1"
    np.testing.assert_array_equal(arrays["sum"], x + np.float32(1))
    np.testing.assert_array_equal(arrays["prod"], x * np.float32(2))
    for o in header["outputs"]:
        assert o["datatype"] == "FP32"
        assert o["shape"] == list(x.shape)


# -- server ---------------------------------------------------------------

def test_server_metadata(srv):
    r = srv.get("/v2")
    assert r.status_code == 200
    j = r.json()
    assert j["name"] and isinstance(j["name"], str)
    assert isinstance(j["version"], str) and j["version"]
    ext = j["extensions"]
    assert isinstance(ext, list)
    for e in ("binary_tensor_data", "model_repository", "statistics", "model_configuration"):
        assert e in ext, f"{e} missing from extensions {ext}"


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health(srv, path):
    assert srv.get(path).status_code == 200


# -- model metadata and readiness -----------------------------------------

def test_model_metadata(srv):
    r = srv.get("/v2/models/two")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["name"] == "two"
    assert j["versions"] == ["1"]
    assert isinstance(j["platform"], str) and j["platform"]
    assert j["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert j["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [-1, 3]},
                            {"name": "prod", "datatype": "FP32", "shape": [-1, 3]}]


def test_model_version_metadata(srv):
    r = srv.get("/v2/models/tagged/versions/2")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["name"] == "tagged"
    assert "2" in j["versions"]
    assert j["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    all_versions = srv.get("/v2/models/tagged").json()["versions"]
    assert sorted(all_versions) == ["1", "2", "3"]


def test_metadata_unknown(srv):
    for path in ("/v2/models/nope", "/v2/models/two/versions/7", "/v2/models/nope/versions/1"):
        r = srv.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        msg = v2.error_of(r)
        assert "nope" in msg or "7" in msg, msg


@pytest.mark.parametrize("path,status", [
    ("/v2/models/two/ready", 200),
    ("/v2/models/two/versions/1/ready", 200),
    ("/v2/models/tagged/versions/3/ready", 200),
    ("/v2/models/two/versions/2/ready", 404),
    ("/v2/models/nope/ready", 404),
    ("/v2/models/nope/versions/1/ready", 404),
])
def test_model_ready(srv, path, status):
    r = srv.get(path)
    assert r.status_code == status, (path, r.text)


# -- inference, JSON --------------------------------------------------------

def test_infer_json(srv):
    body, headers = v2.request({"x": X}, rid="req-42")
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    assert "Inference-Header-Content-Length" not in r.headers
    assert r.headers["Content-Type"].startswith("application/json")
    header, arrays, binary = v2.decode(r)
    assert header["id"] == "req-42"
    assert [o["name"] for o in header["outputs"]] == ["sum", "prod"]
    assert not any(binary.values())
    check_two(header, arrays)


def test_infer_without_id_has_no_id(srv):
    body, headers = v2.request({"x": X})
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    assert "id" not in r.json() or r.json()["id"] in ("", None)


def test_infer_nested_data(srv):
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X.tolist()}]}
    r = srv.infer("two", body)
    assert r.status_code == 200, r.text
    check_two(*v2.decode(r)[:2])


def test_infer_versioned_url(srv):
    body, headers = v2.request({"x": X})
    r = srv.post("/v2/models/two/versions/1/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    check_two(*v2.decode(r)[:2])


def test_infer_requested_output(srv):
    body, headers = v2.request({"x": X}, outputs=["prod"])
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, _ = v2.decode(r)
    assert list(arrays) == ["prod"]
    np.testing.assert_array_equal(arrays["prod"], X * 2)


def test_infer_requested_outputs_order(srv):
    body, headers = v2.request({"x": X}, outputs=["prod", "sum"])
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, _ = v2.decode(r)
    assert set(arrays) == {"prod", "sum"}
    check_two(header, arrays)


def test_infer_parameters_accepted(srv):
    body = {"id": "p", "parameters": {"priority": 1, "note": "anything"},
            "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X.reshape(-1).tolist(),
                        "parameters": {"content_type": "np"}}],
            "outputs": [{"name": "sum", "parameters": {"binary_data": False}}]}
    r = srv.infer("two", body)
    assert r.status_code == 200, r.text
    header, arrays, binary = v2.decode(r)
    assert header["id"] == "p" and list(arrays) == ["sum"] and not binary["sum"]
    np.testing.assert_array_equal(arrays["sum"], X + 1)


def test_infer_dynamic_batch(srv):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    body, headers = v2.request({"x": x})
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    check_two(*v2.decode(r)[:2], x=x)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_infer_each_version(srv, version):
    x = np.array([10, 20], np.float32)
    body, headers = v2.request({"x": x})
    r = srv.post(f"/v2/models/tagged/versions/{version}/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, _ = v2.decode(r)
    assert header["model_name"] == "tagged" and header["model_version"] == str(version)
    np.testing.assert_array_equal(arrays["y"], x + version)


def test_infer_default_version_is_highest(srv):
    body, headers = v2.request({"x": np.zeros(1, np.float32)})
    r = srv.post("/v2/models/tagged/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, _ = v2.decode(r)
    assert header["model_version"] == "3" and arrays["y"][0] == 3


# -- inference, binary ------------------------------------------------------

def test_infer_binary_in_json_out(srv):
    body, headers = v2.request({"x": X}, binary_inputs=True, rid="b1")
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, binary = v2.decode(r)
    assert header["id"] == "b1" and not any(binary.values())
    check_two(header, arrays)


def test_infer_json_in_binary_out_per_output(srv):
    body, headers = v2.request({"x": X}, outputs=["sum", "prod"], binary_outputs={"prod"})
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    hl = int(r.headers["Inference-Header-Content-Length"])
    assert hl < len(r.content)
    header, arrays, binary = v2.decode(r)
    assert binary == {"sum": False, "prod": True}
    prod = next(o for o in header["outputs"] if o["name"] == "prod")
    assert prod["parameters"]["binary_data_size"] == X.nbytes
    assert "data" not in prod
    check_two(header, arrays)


def test_infer_binary_both_ways(srv):
    body, headers = v2.request({"x": X}, binary_inputs=True, binary_output_default=True)
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, binary = v2.decode(r)
    assert binary == {"sum": True, "prod": True}
    check_two(header, arrays)
    # the tail is exactly the two outputs, in order
    hl = int(r.headers["Inference-Header-Content-Length"])
    names = [o["name"] for o in header["outputs"]]
    tail = b"".join((X + 1 if n == "sum" else X * 2).tobytes() for n in names)
    assert r.content[hl:] == tail


def test_infer_binary_default_with_requested_output(srv):
    body, headers = v2.request({"x": X}, binary_inputs=True, outputs=["sum"], binary_output_default=True)
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, binary = v2.decode(r)
    assert binary == {"sum": True}
    np.testing.assert_array_equal(arrays["sum"], X + 1)


def test_infer_binary_versioned(srv):
    x = np.array([0.5], np.float32)
    body, headers = v2.request({"x": x}, binary_inputs=True, binary_output_default=True)
    r = srv.post("/v2/models/tagged/versions/2/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    header, arrays, _ = v2.decode(r)
    assert header["model_version"] == "2"
    np.testing.assert_array_equal(arrays["y"], x + 2)


# -- config, statistics, repository index -----------------------------------

def test_model_config(srv):
    r = srv.get("/v2/models/two/config")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["name"] == "two"
    assert [i["name"] for i in j["input"]] == ["x"]
    assert j["input"][0]["data_type"] == "TYPE_FP32"
    assert [o["name"] for o in j["output"]] == ["sum", "prod"]
    r = srv.get("/v2/models/batched/config")
    assert r.status_code == 200, r.text
    assert r.json()["max_batch_size"] == 8


def test_model_config_unknown(srv):
    r = srv.get("/v2/models/nope/config")
    assert r.status_code == 404
    assert "nope" in v2.error_of(r)


def stats_entries(j):
    assert isinstance(j["model_stats"], list)
    return {(e["name"], e["version"]): e for e in j["model_stats"]}


def test_model_stats(srv):
    good, _ = v2.request({"x": np.ones(4, np.float32)})
    for _ in range(3):
        assert srv.post("/v2/models/stats_m/infer", data=good,
                        headers={"Content-Type": "application/json"}).status_code == 200
    bad = srv.infer("stats_m", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]})
    assert bad.status_code == 400
    r = srv.get("/v2/models/stats_m/stats")
    assert r.status_code == 200, r.text
    e = stats_entries(r.json())[("stats_m", "1")]
    st = e["inference_stats"]
    assert st["success"]["count"] == 3
    assert st["success"]["ns"] > 0
    assert e["inference_count"] >= 3 and e["execution_count"] >= 3
    assert st["queue"]["count"] >= 3
    assert st["compute_infer"]["count"] >= 3 and st["compute_infer"]["ns"] > 0
    assert e["last_inference"] > 0
    # per version, and every model
    r = srv.get("/v2/models/stats_m/versions/1/stats")
    assert r.status_code == 200, r.text
    assert list(stats_entries(r.json())) == [("stats_m", "1")]
    r = srv.get("/v2/models/stats")
    assert r.status_code == 200, r.text
    keys = set(stats_entries(r.json()))
    assert {("two", "1"), ("stats_m", "1"), ("tagged", "1"), ("tagged", "3")} <= keys


def test_model_stats_unknown(srv):
    assert srv.get("/v2/models/nope/stats").status_code == 404
    assert srv.get("/v2/models/two/versions/9/stats").status_code == 404


def test_repository_index(srv):
    idx = srv.index()
    assert isinstance(idx, list)
    rows = {(e["name"], str(e.get("version", ""))): e for e in idx}
    for key in (("two", "1"), ("tagged", "1"), ("tagged", "2"), ("tagged", "3"), ("stats_m", "1")):
        assert key in rows, f"{key} missing from {idx}"
        assert rows[key]["state"] == "READY"
    ready = srv.index(ready=True)
    assert all(e["state"] == "READY" for e in ready)
    assert {e["name"] for e in ready} >= {"two", "tagged", "stats_m", "batched"}
    # an empty body is allowed too
    r = srv.post("/v2/repository/index")
    assert r.status_code == 200, r.text


# -- /metrics -----------------------------------------------------------------

def metric_value(text, name, **labels):
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def test_metrics(srv):
    body, headers = v2.request({"x": X})
    for _ in range(2):
        assert srv.post("/v2/models/two/infer", data=body, headers=headers).status_code == 200
    r = srv.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    t = r.text
    assert metric_value(t, "tern_requests_total", model="two", version="1", outcome="success") >= 2
    assert metric_value(t, "tern_request_duration_seconds_count", model="two", version="1") >= 2
    assert metric_value(t, "tern_request_duration_seconds_bucket", model="two", version="1", le="+Inf") >= 2
    assert metric_value(t, "tern_queue_duration_seconds_count", model="two", version="1") >= 2
    assert metric_value(t, "tern_compute_duration_seconds_count", model="two", version="1") >= 2
    assert metric_value(t, "tern_inflight_requests", model="two", version="1") == 0
    assert metric_value(t, "tern_model_loaded", model="tagged", version="2") == 1
    assert metric_value(t, "tern_model_load_duration_seconds", model="two", version="1") > 0
    assert metric_value(t, "tern_process_cpu_seconds_total") > 0
    assert metric_value(t, "tern_process_resident_memory_bytes") > 1e6
    assert metric_value(t, "tern_http_open_connections") >= 1


def test_metrics_client_error_counted(srv):
    before = metric_value(srv.get("/metrics").text, "tern_requests_total",
                          model="two", version="1", outcome="client_error") or 0
    r = srv.infer("two", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]})
    assert r.status_code == 400
    after = metric_value(srv.get("/metrics").text, "tern_requests_total",
                         model="two", version="1", outcome="client_error")
    assert after == before + 1


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian's prometheus) not installed")
def test_metrics_promtool(srv):
    body, headers = v2.request({"x": X})
    srv.post("/v2/models/two/infer", data=body, headers=headers)
    text = srv.get("/metrics").content
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


def test_unknown_route(srv):
    for path in ("/", "/v3", "/v2/nothing", "/v2/models/two/bogus"):
        r = srv.get(path)
        assert r.status_code == 404, (path, r.status_code)


def test_wrong_method(srv):
    r = srv.get("/v2/models/two/infer")
    assert r.status_code in (404, 405), r.status_code
    r = srv.post("/v2/health/live", data=b"")
    assert r.status_code in (404, 405), r.status_code
