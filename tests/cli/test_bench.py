"""`tern bench` against a running `tern serve` (started as the integration
suite does) and against a small fake KServe server written here, whose
answers the test chooses. References: the server's own statistics endpoint
(how many requests it answered), the offered Poisson rate, and the fake
server's count of the statuses it sent."""
import csv
import io
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from conftest import SLOW, TERN, serve, steps_for  # noqa: E402,F401  (serve is a fixture)
from servemodels import save, tagged_model  # noqa: E402


def bench(*args, timeout=300):
    return subprocess.run([TERN, "bench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout * SLOW)


def success_count(srv, model):
    r = srv.get(f"/v2/models/{model}/stats")
    assert r.status_code == 200, r.text
    return sum(m["inference_stats"]["success"]["count"] for m in r.json()["model_stats"])


@pytest.fixture
def tiny(serve, tmp_path):
    """tern serve with `tiny`: y = x + 1 over FP32 [-1]."""
    save(tagged_model(1), tmp_path / "repo" / "tiny" / "1" / "model.onnx")
    return serve(tmp_path / "repo")


def check_level(lv):
    assert lv["throughput"] > 0
    assert 0 < lv["p50_us"] <= lv["p90_us"] <= lv["p95_us"] <= lv["p99_us"] <= lv["max_us"]
    assert lv["errors"] == 0 and lv["errors_by_status"] == {}
    assert lv["windows"] >= 3 and isinstance(lv["stable"], bool)
    # throughput is the 200 responses of the last three windows per second
    assert lv["throughput"] == pytest.approx(lv["requests"] / (3 * lv["window_s"]), rel=1e-3)


def test_concurrency_sweep_json_agrees_with_server_stats(tiny):
    before = success_count(tiny, "tiny")
    p = bench("tiny", "--url", tiny.url, "--concurrency", "1,4", "--duration", 1, "--format", "json")
    assert p.returncode == 0, p.stderr
    levels = json.loads(p.stdout)
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for lv in levels:
        check_level(lv)
        # the server counted the same requests over the same windows (in flight
        # at the window edges: at most the concurrency, twice)
        span = 3 * lv["window_s"]
        assert lv["server_requests"] / span == pytest.approx(lv["throughput"],
                                                              abs=2 * lv["concurrency"] / span + 1)
        assert lv["server_queue_us"] >= 0 and lv["server_compute_us"] > 0
        assert lv["unfinished"] == 0
    # every request the bench saw answered (warm-up and drain included), plus
    # its one probe, is one the server counted
    after = success_count(tiny, "tiny")
    assert after - before == sum(lv["completed_total"] for lv in levels) + 1


def test_open_loop_rate(tiny):
    p = bench("tiny", "--url", tiny.url, "--rate", 200, "--duration", 1.5, "--format", "json")
    assert p.returncode == 0, p.stderr
    (lv,) = json.loads(p.stdout)
    assert lv["rate"] == 200
    check_level(lv)
    assert lv["throughput"] == pytest.approx(200, rel=0.25)


def test_open_loop_latency_counts_from_schedule(serve, tmp_path):
    """Offered twice what the server can do, an open loop must show the
    queue building (latency far above the service time, throughput below
    the rate), where a closed loop at concurrency 1 shows the service time."""
    save(tagged_model(1, work=steps_for(20)), tmp_path / "repo" / "slow" / "1" / "model.onnx")
    srv = serve(tmp_path / "repo")
    p = bench("slow", "--url", srv.url, "--concurrency", "1,8", "--duration", 1.5, "--format", "json")
    assert p.returncode == 0, p.stderr
    alone, busy = json.loads(p.stdout)
    capacity = busy["throughput"]
    p = bench("slow", "--url", srv.url, "--rate", round(2 * capacity, 1), "--duration", 1.5,
              "--format", "json")
    assert p.returncode == 0, p.stderr
    (lv,) = json.loads(p.stdout)
    assert lv["throughput"] < 1.5 * capacity
    if lv["errors"] == 0:  # all were queued: the wait shows in the latency
        assert lv["p50_us"] > 3 * alone["p50_us"], (alone, busy, lv)


def test_binary_with_input_file(tiny, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(16, dtype=np.float32))
    p = bench("tiny", "--url", tiny.url, "--input", f"x={tmp_path / 'x.npy'}", "--binary",
              "--concurrency", 2, "--duration", 0.5, "--format", "json")
    assert p.returncode == 0, p.stderr
    check_level(json.loads(p.stdout)[0])


def test_csv_and_table(tiny):
    p = bench("tiny", "--url", tiny.url, "--concurrency", "1,2", "--duration", 0.5, "--format", "csv")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [(r["mode"], r["level"]) for r in rows] == [("concurrency", "1"), ("concurrency", "2")]
    for r in rows:
        assert float(r["throughput"]) > 0 and int(r["errors"]) == 0
        assert float(r["p50_us"]) <= float(r["p99_us"])
        assert int(r["server_requests"]) > 0

    p = bench("tiny", "--url", tiny.url, "--concurrency", "1,2", "--duration", 0.5)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if "req/s" in l)
    assert "p99 ms" in lines[head] and "compute ms" in lines[head]
    rows = [l.split() for l in lines[head + 1:]]
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(float(r[1]) > 0 and r[6] == "0" for r in rows)


def test_unknown_model(tiny):
    p = bench("nosuch", "--url", tiny.url, "--duration", 0.3)
    assert p.returncode == 1
    assert "nosuch" in p.stderr and "404" in p.stderr
    assert p.stdout == ""


def test_bad_input_named(tiny, tmp_path):
    np.save(tmp_path / "z.npy", np.ones(3, np.float32))
    p = bench("tiny", "--url", tiny.url, "--input", f"zz={tmp_path / 'z.npy'}", "--duration", 0.3)
    assert p.returncode == 1
    assert "400" in p.stderr and "zz" in p.stderr


def test_no_server():
    from conftest import free_port
    p = bench("tiny", "--url", f"http://127.0.0.1:{free_port()}", "--duration", 0.3)
    assert p.returncode == 1 and "tern: error:" in p.stderr


@pytest.mark.parametrize("args", [
    ["--concurrency", "0"], ["--concurrency", "1,x"], ["--concurrency", "2000"],
    ["--rate", "-1"], ["--rate", "0"], ["--format", "xml"], ["--duration", "x"],
    ["--duration", "0"], ["--rate", "5", "--concurrency", "1"], ["--bogus"], ["--input", "noeq"],
    ["--url"], [],
], ids=lambda a: " ".join(a) or "no-model")
def test_bad_flags(args):
    p = bench(*(["m"] if args else []), *args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "tern: error:" in p.stderr or "usage:" in p.stderr


# ---- a fake server: statuses the test chooses -----------------------------

class Fake(BaseHTTPRequestHandler):
    """KServe metadata for `fake` (x INT32 [-1, 2]); the first inference
    answers 200, then every third one 429; every fifth response closes its
    connection. No stats endpoint (404)."""
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    n = 0
    sent = {}

    def log_message(self, *a):
        pass

    def reply(self, status, obj, close=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/v2/models/fake", "/v2/models/big"):
            self.reply(200, {"name": "fake", "versions": ["1"], "platform": "x",
                             "inputs": [{"name": "x", "datatype": "INT32", "shape": [-1, 2]}],
                             "outputs": [{"name": "y", "datatype": "INT32", "shape": [-1, 2]}]})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        (inp,) = req["inputs"]
        assert inp["name"] == "x" and inp["shape"] == [1, 2] and inp["datatype"] == "INT32"
        if self.path == "/v2/models/big/infer":  # larger than the bench's read buffer
            self.reply(200, {"model_name": "big", "pad": "x" * 600_000, "outputs": []})
            return
        with Fake.lock:
            Fake.n += 1
            k = Fake.n
            status = 429 if k > 1 and k % 3 == 0 else 200
            Fake.sent[status] = Fake.sent.get(status, 0) + 1
        if status == 200:
            self.reply(200, {"model_name": "fake", "model_version": "1",
                             "outputs": [{"name": "y", "datatype": "INT32", "shape": [1, 2],
                                          "data": inp["data"]}]}, close=k % 5 == 0)
        else:
            self.reply(429, {"error": "too many requests"}, close=k % 5 == 0)


@pytest.fixture
def fake():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_large_responses(fake):
    p = bench("big", "--url", fake, "--concurrency", 2, "--duration", 0.5, "--format", "json")
    assert p.returncode == 0, p.stderr
    (lv,) = json.loads(p.stdout)
    assert lv["requests"] > 0 and lv["errors"] == 0


def test_errors_by_status_against_fake_server(fake):
    Fake.n, Fake.sent = 0, {}
    p = bench("fake", "--url", fake, "--concurrency", 2, "--duration", 1, "--format", "json")
    assert p.returncode == 0, p.stderr
    (lv,) = json.loads(p.stdout)
    assert set(lv["errors_by_status"]) == {"429"}
    n429, n200 = lv["errors_by_status"]["429"], lv["requests"]
    assert n429 == lv["errors"] > 0
    # one in three answers was a 429, whatever closed its connection
    assert n429 / (n429 + n200) == pytest.approx(1 / 3, abs=0.05)
    # overall, the bench saw exactly the 200s the fake sent (minus its probe)
    assert lv["completed_total"] == Fake.sent[200] - 1
    assert lv["server_requests"] is None and lv["server_compute_us"] is None
