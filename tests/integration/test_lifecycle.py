"""Hot swap and shutdown.

Hot swap: 8 clients send requests without pause to a model whose versions
compute y = x + version (with enough MatMul work to keep requests in flight)
while new versions are loaded through the API (explicit mode) or dropped into
the folder (poll mode). Every request must succeed, every answer must come
from a loaded version and agree with it (y - x == model_version), once a load
call has returned no request that starts later gets an older version, and the
old version ends unloaded.

Shutdown: SIGTERM while slow requests are in flight; each finishes with a
correct answer, no new connection is served, the process exits 0; and the
drain timeout bounds the wait.
"""
import socket
import threading
import time

import pytest
import requests

from conftest import SLOW, make_tagged_repo, ms_per_step, steps_for, tagged_infer, wait_for


class Clients:
    """n threads inferring in a loop; records (start, end, status, version, x, y)."""

    def __init__(self, srv, model, n=8):
        self.srv, self.model, self.n = srv, model, n
        self.stop = threading.Event()
        self.records = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]

    def run(self, i):
        session = requests.Session()
        k = 0
        while not self.stop.is_set():
            x = [float(i), float(k % 1000)]
            body = {"id": f"{i}-{k}", "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": x}],
                    "outputs": [{"name": "y"}]}
            t0 = time.monotonic()
            try:
                r = session.post(f"{self.srv.url}/v2/models/{self.model}/infer", json=body, timeout=60 * SLOW)
                rec = (t0, time.monotonic(), r.status_code, r.json() if r.status_code == 200 else r.text, x)
            except Exception as e:  # a failed request is a result to report, not a crash
                rec = (t0, time.monotonic(), -1, repr(e), x)
            with self.lock:
                self.records.append(rec)
            k += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def check(self, loaded):
        """All succeeded; each answer from a version in `loaded`, consistent with it."""
        failures = [r for r in self.records if r[2] != 200]
        assert not failures, f"{len(failures)} of {len(self.records)} requests failed, e.g. {failures[:3]}"
        seen = {}
        for t0, t1, status, j, x in self.records:
            v = j["model_version"]
            assert v in loaded, f"answer from version {v}, not one of {loaded}"
            y = j["outputs"][0]["data"]
            assert y == [xi + int(v) for xi in x], f"version {v} answered {y} for {x}"
            seen[v] = seen.get(v, 0) + 1
        return seen

    def versions_after(self, t):
        return {r[3]["model_version"] for r in self.records if r[0] > t and r[2] == 200}


@pytest.mark.parametrize("mode", ["explicit", "poll"])
def test_hot_swap_under_load(serve, tmp_path, mode):
    repo = tmp_path / "repo"
    work = steps_for(10)
    make_tagged_repo(repo, "hot", [1], work=work)
    args = ["--model-control-mode", mode]
    if mode == "explicit":
        args += ["--load-model", "hot"]
    else:
        args += ["--repository-poll-secs", "1"]
    srv = serve(repo, *args)
    swapped_at = {}
    with Clients(srv, "hot", 8) as clients:
        time.sleep(1.0)
        for v in (2, 3):
            make_tagged_repo(repo, "hot", [v], work=work)
            if mode == "explicit":
                r = requests.post(f"{srv.url}/v2/repository/models/hot/load", timeout=120 * SLOW)
                assert r.status_code == 200, r.text
            else:
                wait_for(lambda: tagged_infer(srv, "hot", [0.0])[1] == str(v), period=0.05,
                         what=f"poll to switch to version {v}")
            swapped_at[v] = time.monotonic()
            time.sleep(1.0 * SLOW)
    seen = clients.check({"1", "2", "3"})
    assert len(clients.records) >= 24, f"only {len(clients.records)} requests in the run"
    assert seen.get("1") and seen.get("3"), seen
    # atomic switch: requests that start after a swap has happened never see an older version
    assert clients.versions_after(swapped_at[2]) <= {"2", "3"}
    assert clients.versions_after(swapped_at[3]) == {"3"}
    # the old versions are gone
    assert srv.get("/v2/models/hot").json()["versions"] == ["3"]
    for v in ("1", "2"):
        wait_for(lambda: srv.get(f"/v2/models/hot/versions/{v}/ready").status_code != 200,
                 what=f"version {v} unloaded")
    ready = [e for e in srv.index(ready=True) if e["name"] == "hot"]
    assert [str(e["version"]) for e in ready] == ["3"], ready
    metrics = srv.get("/metrics").text
    assert 'tern_model_loaded{model="hot",version="1"} 0' in metrics
    assert 'tern_model_loaded{model="hot",version="3"} 1' in metrics
    srv.assert_alive()


def test_hot_swap_failed_version_under_load(serve, tmp_path):
    """A version that fails to load while clients are running changes nothing."""
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "hot", [1], work=steps_for(10))
    srv = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    with Clients(srv, "hot", 8) as clients:
        time.sleep(0.5)
        (repo / "hot" / "2").mkdir()
        (repo / "hot" / "2" / "model.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f broken")
        wait_for(lambda: any(e["name"] == "hot" and str(e.get("version")) == "2" and e["state"] != "READY"
                             and e.get("reason") for e in srv.index()), what="version 2 reported as failed")
        time.sleep(1.5)
    assert clients.check({"1"}) == {"1": len(clients.records)}
    srv.assert_alive()


def slow_requests(srv, n, model="slow"):
    results = [None] * n

    def one(i):
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [float(i)]}],
                "outputs": [{"name": "y"}]}
        try:
            r = requests.post(f"{srv.url}/v2/models/{model}/infer", json=body, timeout=120 * SLOW)
            j = r.json() if r.status_code == 200 else r.text
            results[i] = (r.status_code, j["model_version"], j["outputs"][0]["data"]) if r.status_code == 200 \
                else (r.status_code, None, j)
        except Exception as e:
            results[i] = ("exception", repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def inflight(srv):
    for line in srv.get("/metrics", timeout=10).text.splitlines():
        if line.startswith("tern_inflight_requests{") and 'model="slow"' in line:
            return float(line.split()[-1])
    return 0


def test_sigterm_drains_inflight(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "slow", [1], work=steps_for(300))  # ~0.3 s a request
    srv = serve(repo, "--drain-timeout-secs", "60")
    t0 = time.monotonic()
    assert tagged_infer(srv, "slow", [0.0]) == (200, "1", [1.0])
    one = time.monotonic() - t0
    threads, results = slow_requests(srv, 4)
    # all four must have reached the server before SIGTERM: connections that
    # arrive after it are refused, by design
    wait_for(lambda: inflight(srv) + sum(r is not None for r in results) >= 4, period=0.02,
             what="requests in flight")
    srv.sigterm()
    # no new request is served once draining has begun
    time.sleep(0.05)
    try:
        r = requests.get(srv.url + "/v2/health/live", timeout=5)
        assert r.status_code == 503, f"a new request was served during the drain: {r.status_code}"
    except requests.ConnectionError:
        pass
    for t in threads:
        t.join(120 * SLOW)
    assert results == [(200, "1", [float(i) + 1]) for i in range(4)], results
    rc = srv.proc.wait(60 * SLOW)
    assert rc == 0, srv.stderr()[-3000:]
    srv.assert_clean()
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/v2/health/live", timeout=5)
    assert one > 0


def test_sigterm_idle_exits_promptly(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "m", [1])
    srv = serve(tmp_path / "repo")
    # an idle keep-alive connection must not hold the shutdown
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200" in s.recv(4096).split(b"\r\n")[0]
    t0 = time.monotonic()
    srv.sigterm()
    rc = srv.proc.wait(30 * SLOW)
    s.close()
    assert rc == 0
    assert time.monotonic() - t0 < 10 * SLOW
    srv.assert_clean()


def test_drain_timeout_bounds_shutdown(serve, tmp_path):
    repo = tmp_path / "repo"
    work = steps_for(2500)  # ~2.5 s a request
    make_tagged_repo(repo, "slow", [1], work=work)
    one = work * ms_per_step() / 1000
    srv = serve(repo, "--drain-timeout-secs", "1")
    threads, results = slow_requests(srv, 4)  # ~10 s of queued work
    wait_for(lambda: inflight(srv) >= 1, period=0.02, what="requests in flight")
    t0 = time.monotonic()
    srv.sigterm()
    rc = srv.proc.wait(60 * SLOW)
    took = time.monotonic() - t0
    for t in threads:
        t.join(60)
    assert rc == 0, srv.stderr()[-3000:]
    # drain 1 s, plus at most the engine run that was under way
    assert took < 1 + 1.5 * one + 2, f"shutdown took {took:.1f} s with a 1 s drain timeout " \
        f"and {one:.1f} s requests; " \
        f"results {[r[:2] for r in results]}; log {srv.stderr()[-1500:]}"
    assert any(r[0] != 200 for r in results), "all queued requests finished: the timeout did not apply"
    srv.assert_clean()


def test_log_level(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "m", [1])
    quiet = serve(tmp_path / "repo", "--log-level", "error")
    assert tagged_infer(quiet, "m", [0.0])[0] == 200
    assert quiet.log_lines() == [], quiet.stderr()
    loud = serve(tmp_path / "repo", "--log-level", "debug")
    lines = loud.log_lines()
    assert any(l["msg"] == "listening" and l["port"] == loud.port for l in lines), lines
    assert all(l["level"] in ("debug", "info", "warn", "error") for l in lines)


def test_config_file_and_flag_precedence(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "a", [1])
    make_tagged_repo(repo, "b", [1])
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("model_control_mode: explicit\nload-model: [a]\nmax_body_bytes: 2048\n")
    srv = serve(repo, "--config", cfg, "--max-body-bytes", "100000")
    assert srv.get("/v2/models/a/ready").status_code == 200
    assert srv.get("/v2/models/b/ready").status_code == 400  # explicit mode from the file
    # the flag wins over the file's 2 KB limit: a 4 KB request goes through
    assert tagged_infer(srv, "a", [i + 0.123456 for i in range(400)])[0] == 200


@pytest.mark.parametrize("args,needle", [
    (["--port", "abc"], "--port"),
    (["--port", "70000"], "port"),
    (["--model-control-mode", "sometimes"], "sometimes"),
    (["--no-such-flag", "1"], "--no-such-flag"),
    (["--threads", "-2"], "threads"),
    (["--config", "/nonexistent/serve.yaml"], "/nonexistent/serve.yaml"),
])
def test_bad_settings(tmp_path, args, needle):
    import subprocess
    from conftest import TERN
    (tmp_path / "repo").mkdir()
    p = subprocess.run([TERN, "serve", "--model-repository", tmp_path / "repo", *args],
                       capture_output=True, text=True, timeout=30)
    assert 0 < p.returncode < 128, (p.returncode, p.stderr)
    assert needle in p.stderr, p.stderr
    for mark in ("AddressSanitizer", "runtime error", "LeakSanitizer"):
        assert mark not in p.stderr


def test_missing_repository(tmp_path):
    import subprocess
    from conftest import TERN
    p = subprocess.run([TERN, "serve", "--model-repository", tmp_path / "nope", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert 0 < p.returncode < 128 and str(tmp_path / "nope") in p.stderr, p.stderr
