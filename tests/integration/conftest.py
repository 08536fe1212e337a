"""Fixtures of the integration suite: a `tern serve` process per test (or per
module), on a free loopback port, over a model repository the test builds.

The Server object starts the process, waits for /v2/health/ready, and on stop
sends SIGTERM and checks that the process exits 0, was never replaced (same
pid, still alive before the stop) and left no sanitizer report on stderr.
Run with TERN_BIN pointing at the tern binary (ctest sets it).
"""
import functools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from servemodels import save, tagged_model

TERN = os.environ.get("TERN_BIN", "build/tern")
SANITIZER_MARKS = ("AddressSanitizer", "runtime error", "LeakSanitizer", "UndefinedBehaviorSanitizer")
# The sanitizer build is several times slower; waits scale with it.
SLOW = 3 if os.environ.get("TERN_SLOW") else 1


def sanitized():
    """True for an ASan build (whose allocator ignores RLIMIT_AS)."""
    if os.environ.get("TERN_SLOW"):
        return True
    try:
        with open(TERN, "rb") as f:
            return b"AddressSanitizer" in f.read()
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def ms_per_step():
    """Milliseconds one MatMul+Tanh step of tagged_model (n=256) takes with
    this tern binary, measured with `tern run` (the sanitizer build is tens of
    times slower), so slow models take about as long in every build."""
    import numpy as np
    with tempfile.TemporaryDirectory() as d:
        save(tagged_model(1, work=4), os.path.join(d, "m.onnx"))
        np.save(os.path.join(d, "x.npy"), np.zeros(1, np.float32))
        p = subprocess.run([TERN, "run", os.path.join(d, "m.onnx"), "--input", f"x={d}/x.npy",
                            "--output-dir", d, "--threads", "1", "--repeat", "3"],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])["median_ms"] / 4


def steps_for(ms):
    """The `work` of a tagged_model whose run takes about `ms` milliseconds."""
    return max(1, round(ms / ms_per_step()))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=15.0, period=0.1, what="condition"):
    """Polls cond() until it returns a truthy value; fails the test after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except requests.RequestException as e:
            last = e
        time.sleep(period)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


class Server:
    def __init__(self, repo, args=(), log_dir=None, preexec=None):
        self.repo = str(repo)
        self.args = [str(a) for a in args]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(log_dir or self.repo, f"serve-{self.port}.log")
        self.preexec = preexec  # run in the child before exec (e.g. resource limits)
        self.proc = None
        self.terminated = False  # the test sent SIGTERM itself
        self.session = requests.Session()

    # -- process ---------------------------------------------------------
    def start(self, wait_ready=True):
        self.log = open(self.log_path, "wb")
        cmd = [TERN, "serve", "--model-repository", self.repo, "--host", "127.0.0.1",
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=self.preexec)
        self.pid = self.proc.pid

        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"tern serve exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                r = requests.get(self.url + "/v2/health/ready" if wait_ready else self.url + "/v2/health/live",
                                 timeout=2)
                return r.status_code == 200
            except requests.ConnectionError:
                return False

        try:
            wait_for(up, timeout=60, what="tern serve to become ready")
        except BaseException:
            # never leave a server behind when the test fails here
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.log.close()
            self.proc = None
            raise
        return self

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        """The JSON log lines of stderr, parsed (other lines are skipped)."""
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def assert_alive(self):
        """Same process, still running: a bad input must neither kill nor restart it."""
        assert self.proc.poll() is None, f"tern serve died ({self.proc.returncode}):\n{self.stderr()[-4000:]}"
        assert self.proc.pid == self.pid
        self.assert_clean()
        # a good request still succeeds
        r = requests.get(self.url + "/v2/health/live", timeout=10)
        assert r.status_code == 200

    def assert_clean(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report on stderr:\n{err[-6000:]}"

    def sigterm(self):
        """Sends SIGTERM (the test then waits on self.proc itself)."""
        self.terminated = True
        self.proc.send_signal(signal.SIGTERM)

    def terminate(self, timeout=60):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"tern serve did not exit within {timeout}s of SIGTERM:\n{self.stderr()[-4000:]}")

    def stop(self):
        if self.proc is None:
            return
        was_alive = self.terminated or self.proc.poll() is None
        rc = self.terminate()
        self.log.close()
        self.session.close()
        assert was_alive, f"tern serve had already exited ({rc}):\n{self.stderr()[-4000:]}"
        assert rc == 0, f"tern serve exited {rc} after SIGTERM:\n{self.stderr()[-4000:]}"
        self.assert_clean()

    # -- HTTP ------------------------------------------------------------
    def get(self, path, **kw):
        kw.setdefault("timeout", 30 * SLOW)
        return self.session.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 30 * SLOW)
        return self.session.post(self.url + path, **kw)

    def infer(self, model, body, version=None, **kw):
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"
        return self.post(path, json=body, **kw)

    def index(self, ready=None):
        r = self.post("/v2/repository/index", json={} if ready is None else {"ready": ready})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def serve(tmp_path):
    """serve(repo, *args) starts a server that is stopped (and checked) at teardown."""
    started = []

    def start(repo, *args, wait_ready=True, preexec=None):
        s = Server(repo, args, log_dir=str(tmp_path), preexec=preexec).start(wait_ready=wait_ready)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def tagged_infer(srv, model, xs, version=None, **kw):
    """Infers y = x + tag on a tagged model; returns (status, version, y or error)."""
    body = {"inputs": [{"name": "x", "shape": [len(xs)], "datatype": "FP32", "data": list(xs)}],
            "outputs": [{"name": "y"}]}
    r = srv.infer(model, body, version=version, **kw)
    if r.status_code != 200:
        return r.status_code, None, r.text
    j = r.json()
    return 200, j["model_version"], j["outputs"][0]["data"]


def make_tagged_repo(repo, model, versions, work=0, config=None, n=256):
    """repo/model/<v>/model.onnx for each v, with y = x + v."""
    for v in versions:
        save(tagged_model(v, work=work, n=n), os.path.join(str(repo), model, str(v), "model.onnx"))
    if config is not None:
        with open(os.path.join(str(repo), model, "config.yaml"), "w") as f:
            f.write(config)
