"""Bad input against one running server (poll mode, 1 s period): truncated
bodies, invalid JSON, wrong types, shape/data length mismatches, non-numeric
data, a 1 GB Content-Length, slow-loris connections, broken HTTP, unknown
models, `..` and `/` in model names, and corrupt models dropped into the
repository. After each case a good request still succeeds and the process
is the same one (same pid, still running, no sanitizer report)."""
import json
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import requests

import v2
from conftest import SLOW, Server, make_tagged_repo, steps_for, tagged_infer, wait_for
from servemodels import save, tagged_model, two_output_model

HEADER_TIMEOUT = 2


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    r = root / "repo"
    make_tagged_repo(r, "m", [1])
    save(two_output_model(), r / "two" / "1" / "model.onnx")
    # a valid model OUTSIDE the repository, which no name may reach
    save(tagged_model(666), root / "escape" / "1" / "model.onnx")
    return r


@pytest.fixture(scope="module")
def srv(repo, tmp_path_factory):
    s = Server(repo, ["--model-control-mode", "poll", "--repository-poll-secs", "1",
                      "--max-body-bytes", str(1 << 20), "--max-connections", "64",
                      "--header-timeout-secs", str(HEADER_TIMEOUT), "--idle-timeout-secs", "5",
                      "--log-level", "info"],
               log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


@pytest.fixture
def good(srv):
    """After each test: the same process answers a good request correctly."""
    yield
    # a fresh connection: the pooled one may have passed the 5 s idle timeout,
    # and a POST racing the server's close of an idle keep-alive connection
    # fails in any HTTP client
    srv.session.close()
    srv.session = requests.Session()
    srv.assert_alive()
    assert tagged_infer(srv, "m", [1.0, 2.0]) == (200, "1", [2.0, 3.0])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, headers = v2.request({"x": x}, binary_inputs=True, binary_output_default=True)
    r = srv.post("/v2/models/two/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(v2.decode(r)[1]["prod"], x * 2)


# -- raw HTTP -------------------------------------------------------------------

def connect(srv, timeout=10):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout * SLOW)
    return s


def read_response(s, limit=1 << 20):
    """Reads until the peer closes or a full response (by Content-Length) is in."""
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length" and len(rest) >= int(v):
                    return data
    return data


def status_of(resp):
    if not resp.startswith(b"HTTP/1."):
        return None
    return int(resp.split(b" ", 2)[1])


def raw(srv, request, shutdown=True):
    """Sends a request and reads the answer; b"" if the server hung up first."""
    s = connect(srv)
    try:
        try:
            s.sendall(request)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed mid-send (e.g. 431 on huge headers)
            pass
        return read_response(s)
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()


def send_and_close(srv, request):
    """Sends and hangs up at once, without reading."""
    s = connect(srv)
    try:
        s.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()


def post_raw(path, body, extra=b"", content_length=None):
    cl = len(body) if content_length is None else content_length
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {cl}\r\n").encode() + extra + b"\r\n" + body


GOOD_JSON = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}).encode()


# -- truncated bodies -------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 1, 10, len(GOOD_JSON) // 2, len(GOOD_JSON) - 1])
def test_truncated_body_then_close(srv, good, cut):
    """Content-Length promises the whole body; the client sends part and hangs up."""
    send_and_close(srv, post_raw("/v2/models/m/infer", GOOD_JSON[:cut], content_length=len(GOOD_JSON)))


def test_truncated_body_then_wait(srv, good):
    """Part of the body, then silence: the idle timeout closes the connection."""
    s = connect(srv, timeout=30)
    s.sendall(post_raw("/v2/models/m/infer", GOOD_JSON[:20], content_length=len(GOOD_JSON)))
    t0 = time.monotonic()
    resp = read_response(s)
    s.close()
    assert time.monotonic() - t0 < 20 * SLOW, "connection held far beyond the idle timeout"
    assert status_of(resp) in (None, 400, 408), resp[:200]


def test_truncated_json_complete_http(srv, good):
    for cut in (1, 17, len(GOOD_JSON) - 2):
        r = srv.post("/v2/models/m/infer", data=GOOD_JSON[:cut], headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (cut, r.text)
        assert "JSON" in v2.error_of(r)


@pytest.mark.parametrize("cut", [1, 5, 11])
def test_truncated_binary(srv, good, cut):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, headers = v2.request({"x": x}, binary_inputs=True)
    r = srv.post("/v2/models/two/infer", data=body[:-cut], headers=headers)
    assert r.status_code == 400, r.text
    assert "x" in v2.error_of(r)


# -- invalid JSON and wrong types -------------------------------------------------

INVALID_JSON = [
    b"{", b"}", b"[", b"null", b"true", b"42", b'"inputs"', b"{'inputs': []}", b'{"inputs": [}',
    b'{"inputs": [1, 2,]}', b'{"inputs": NaN}', b'{"inputs": [{"name": "x", "data": [1e999]}]}',
    b"\x00\x01\x02\x03", b"\xff\xfe{}", b'{"inputs": "\xc3\x28"}', b"{" * 100000, b"[" * 100000 + b"]" * 100000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b" " * 1000, b'{"inputs": []} trailing',
]


@pytest.mark.parametrize("i", range(len(INVALID_JSON)))
def test_invalid_json(srv, good, i):
    r = srv.post("/v2/models/m/infer", data=INVALID_JSON[i], headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    v2.error_of(r)


WRONG = [
    {"inputs": "x"}, {"inputs": [[]]}, {"inputs": [{"name": 1, "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": "2", "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2.5], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [True, 1], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2**62, 2**62], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2**31, 2**31, 4], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [1] * 100, "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": ["FP32"], "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["1", "2"]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": {"0": 1, "1": 2}}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": "1,2"}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2], "parameters": []}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2],
                 "parameters": {"binary_data_size": -8}}]},
    {"id": 5, "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}], "outputs": "y"},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}], "outputs": [{"nam": "y"}]},
    {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}], "parameters": 3},
    {"inputs": [{"name": "x\u0000y", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
]


@pytest.mark.parametrize("i", range(len(WRONG)))
def test_wrong_types(srv, good, i):
    r = srv.infer("m", WRONG[i])
    assert r.status_code == 400, (WRONG[i], r.text[:300])
    v2.error_of(r)


@pytest.mark.parametrize("shape,data", [
    ([3], [1, 2]), ([1], [1, 2]), ([0], [1]), ([2], []), ([2, 2], [1, 2, 3]), ([2, 2], [[1, 2], [3, 4, 5]]),
    ([2, 2], [[1, 2, 3], [4]]), ([4], [[1, 2], [3, 4]]), ([2, 2], [1, [2, 3], 4]), ([2], [[[1]], [[2]]]),
])
def test_shape_data_mismatch(srv, good, shape, data):
    r = srv.infer("m", {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]})
    if (shape, data) in (([4], [[1, 2], [3, 4]]), ([2, 2], [1, [2, 3], 4]), ([2], [[[1]], [[2]]])):
        # nesting that disagrees with the shape but has the right count: either
        # reading is defensible; a crash or a wrong count is not
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            v2.error_of(r)
        return
    assert r.status_code == 400, r.text
    assert "x" in v2.error_of(r)


@pytest.mark.parametrize("data", [["1", "2"], ["a", "b"], [None, 1], [{}, 1], [[], 1], [True, 1],
                                  ["NaN", "Infinity"], [1, "2"]])
def test_non_numeric_data(srv, good, data):
    r = srv.infer("m", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": data}]})
    assert r.status_code == 400, (data, r.text)
    assert "x" in v2.error_of(r)


# -- sizes and connections ---------------------------------------------------------

def test_1gb_content_length(srv, good):
    """The server answers 413 from the header alone, without waiting for 1 GB."""
    s = connect(srv, timeout=15)
    t0 = time.monotonic()
    s.sendall(post_raw("/v2/models/m/infer", GOOD_JSON, content_length=1 << 30))
    resp = read_response(s)
    s.close()
    assert status_of(resp) == 413, resp[:300]
    assert time.monotonic() - t0 < 10 * SLOW
    body = resp.partition(b"\r\n\r\n")[2]
    assert "error" in json.loads(body), body


def test_1gb_content_length_expect_continue(srv, good):
    s = connect(srv, timeout=15)
    s.sendall(post_raw("/v2/models/m/infer", b"", content_length=1 << 30, extra=b"Expect: 100-continue\r\n"))
    resp = read_response(s)
    s.close()
    assert status_of(resp) == 413, resp[:300]


def test_huge_content_length_values(srv, good):
    for cl in (b"99999999999999999999999999", b"-1", b"abc", b"1 2", b"0x10"):
        resp = raw(srv, b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " + cl + b"\r\n\r\n{}")
        assert status_of(resp) in (None, 400, 413), (cl, resp[:200])


def test_1gb_streamed_chunked(srv, good):
    """A chunked body that never ends is cut off at the body limit."""
    s = connect(srv, timeout=15)
    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent, resp = 0, b""
    try:
        while sent < (64 << 20):
            s.sendall(chunk)
            sent += 0x10000
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(5)
    resp = read_response(s)
    s.close()
    assert sent < (64 << 20), "the server accepted 64 MB of a 1 MB-limited body"
    assert status_of(resp) in (None, 413), resp[:200]


def test_bad_chunked_encoding(srv, good):
    for body in (b"zz\r\nabc\r\n0\r\n\r\n", b"ffffffffffffffffffff\r\nabc", b"3\r\nabcdef\r\n0\r\n\r\n"):
        resp = raw(srv, b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert status_of(resp) in (None, 400, 413), resp[:200]


def peer_closed(s):
    """True if the server has closed (or reset) this connection; never blocks."""
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.setblocking(True)


def test_slow_loris(srv, good):
    """Connections that dribble their headers (a line every 0.5 s, so never
    idle) are closed once the header timeout has passed since they opened,
    and meanwhile normal requests are served."""
    conns = []
    for _ in range(20):
        s = connect(srv, timeout=30)
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n")
        conns.append(s)
    t0 = time.monotonic()
    closed_at = {}
    deadline = t0 + (HEADER_TIMEOUT + 6) * SLOW
    served = 0
    while time.monotonic() < deadline and len(closed_at) < len(conns):
        for i, s in enumerate(conns):
            if i in closed_at:
                continue
            try:
                s.sendall(b"X-a: b\r\n")
                if peer_closed(s):
                    closed_at[i] = time.monotonic() - t0
            except (BrokenPipeError, ConnectionResetError):
                closed_at[i] = time.monotonic() - t0
        # normal traffic still goes through
        assert tagged_infer(srv, "m", [0.0], timeout=5 * SLOW) == (200, "1", [1.0])
        served += 1
        time.sleep(0.5)
    for s in conns:
        s.close()
    still_open = len(conns) - len(closed_at)
    assert still_open == 0, (f"{still_open} of {len(conns)} slow-loris connections still open "
                             f"{deadline - t0:.0f} s after opening (header timeout {HEADER_TIMEOUT} s); "
                             f"closed after: {sorted(round(t, 1) for t in closed_at.values())}")
    assert served >= 2


def test_idle_connections_are_closed(srv, good):
    s = connect(srv, timeout=30)
    t0 = time.monotonic()
    try:
        got = s.recv(10)
    except socket.timeout:
        pytest.fail("a silent connection was still open after 30 s (idle timeout 5 s)")
    except ConnectionResetError:
        got = b""
    assert got == b""  # the server hangs up on a silent connection
    assert time.monotonic() - t0 < 20 * SLOW
    s.close()


def test_many_connections(srv, good):
    """More connections than --max-connections: the extra ones are refused or
    wait, the server lives, and when they go away normal service resumes."""
    conns = []
    for _ in range(100):
        try:
            conns.append(connect(srv, timeout=5))
        except OSError:
            break
    for s in conns:
        s.close()
    time.sleep(0.5)


GARBAGE_HTTP = [
    b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n", b"GET /v2 HTTP/1.1\r\n" + b"X-Long: " + b"a" * 200000 + b"\r\n\r\n",
    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2 HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 500\r\n\r\n{}",
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: 99999999999999999999\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"\r\n\r\n\r\n\r\n", b"GET /v2/models/%zz/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/models/%00/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/models/m%00x/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    b"DELETE /v2/models/m HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2 HTTP/1.0\r\n\r\n",
]


@pytest.mark.parametrize("i", range(len(GARBAGE_HTTP)))
def test_broken_http(srv, good, i):
    resp = raw(srv, GARBAGE_HTTP[i])
    st = status_of(resp)
    assert st is None or 200 <= st < 600, resp[:200]
    if st is not None and st != 200:
        assert st >= 400, resp[:200]


def test_pipelined_requests(srv, good):
    one = post_raw("/v2/models/m/infer", GOOD_JSON)
    s = connect(srv)
    s.sendall(one * 3)
    s.settimeout(5 * SLOW)
    data = b""
    try:
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    assert data.count(b"HTTP/1.1 200") == 3, data[:500]


def test_client_disconnects_mid_inference(srv, good):
    """Clients that vanish while their request runs leave nothing behind."""
    for _ in range(10):
        s = connect(srv)
        s.sendall(post_raw("/v2/models/m/infer", GOOD_JSON))
        s.close()
    time.sleep(0.5)


# -- names ---------------------------------------------------------------------------

UNKNOWN_OR_BAD_NAMES = [
    "ghost", "..", ".", "%2e%2e", "..%2Fescape", "%2E%2E%2Fescape", "a%2Fb", "m%2F..%2F..%2Fescape",
    ".hidden", "%00", "m%0A", "x" * 300, "%2Fetc%2Fpasswd", "..%5Cescape", "escape",
]


@pytest.mark.parametrize("name", UNKNOWN_OR_BAD_NAMES)
def test_bad_model_names(srv, good, name):
    for method, path in (("GET", f"/v2/models/{name}"), ("GET", f"/v2/models/{name}/ready"),
                         ("GET", f"/v2/models/{name}/config"), ("GET", f"/v2/models/{name}/stats"),
                         ("POST", f"/v2/models/{name}/infer"), ("POST", f"/v2/models/{name}/versions/1/infer"),
                         ("POST", f"/v2/repository/models/{name}/load"),
                         ("POST", f"/v2/repository/models/{name}/unload")):
        body = GOOD_JSON if method == "POST" else b""
        req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               "Content-Type: application/json\r\n\r\n").encode() + body
        resp = raw(srv, req)
        st = status_of(resp)
        assert st in (400, 404), (method, path, resp[:300])
    # nothing outside the repository was loaded: the escape model answers nowhere
    assert not any("escape" in e["name"] or "/" in e["name"] or e["name"].startswith(".") for e in srv.index())
    assert 'model="escape"' not in srv.get("/metrics").text


def test_dot_dot_paths_with_requests(srv, good, repo):
    """The same through a normal client, which may normalise `..` itself."""
    for path in ("/v2/models/../escape/ready", "/v2/models/m/../../escape/versions/1/infer"):
        r = srv.post(path, data=GOOD_JSON)
        assert r.status_code in (400, 404, 405), (path, r.status_code, r.text)
    # the load API with encoded separators
    r = srv.post("/v2/repository/models/..%2Fescape/load")
    assert r.status_code in (400, 404), r.text
    assert all("escape" not in e["name"] for e in srv.index())


# -- corrupt models under poll mode ------------------------------------------------------

CORRUPT = {
    "garbage": b"this is not a protobuf at all",
    "empty": b"",
    "truncated": None,  # half of a valid model
    "bad_varint": b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    "huge_length": b"\x3a\xff\xff\xff\xff\x0f",
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_model_dropped_in(srv, good, repo, kind):
    data = CORRUPT[kind]
    if data is None:
        valid = tagged_model(2, work=2).SerializeToString()
        data = valid[: len(valid) // 2]
    version = str(7 + list(CORRUPT).index(kind))  # a fresh number for each case
    vdir = repo / "m" / version
    vdir.mkdir()
    (vdir / "model.onnx.tmp").write_bytes(data)
    os.replace(vdir / "model.onnx.tmp", vdir / "model.onnx")
    try:
        def reported():
            rows = [e for e in srv.index() if e["name"] == "m" and str(e.get("version")) == version]
            return rows and rows[0]["state"] not in ("READY", "LOADING") and rows[0].get("reason")
        wait_for(reported, what=f"version {version} reported as failed")
        # version 1 keeps serving throughout
        for _ in range(5):
            assert tagged_infer(srv, "m", [0.0]) == (200, "1", [1.0])
        assert srv.get(f"/v2/models/m/versions/{version}/ready").status_code != 200
    finally:
        shutil.rmtree(vdir)
    time.sleep(1.5)


def test_corrupt_config_dropped_in(srv, good, repo):
    mdir = repo / "cfgbad"
    save(tagged_model(1), mdir / "1" / "model.onnx.x")
    (mdir / "config.yaml").write_text("version_policy: {latest: {num_versions: -4}}\nmax_batch_size: [\n")
    os.replace(mdir / "1" / "model.onnx.x", mdir / "1" / "model.onnx")
    try:
        def reported():
            rows = [e for e in srv.index() if e["name"] == "cfgbad"]
            return rows and all(r["state"] != "READY" for r in rows) and "config.yaml" in rows[0].get("reason", "")
        wait_for(reported, what="cfgbad reported as failed, naming config.yaml")
        assert srv.get("/v2/models/cfgbad/ready").status_code == 400
    finally:
        shutil.rmtree(mdir)
    time.sleep(1.5)


def test_version_folders_that_are_not_versions(srv, good, repo):
    for d in ("abc", "-1", "0", "1.5", "99999999999999999999999", ".tmp"):
        os.makedirs(repo / "m" / d, exist_ok=True)
        save(tagged_model(5), repo / "m" / d / "model.onnx")
    (repo / "loosefile").write_text("not a model folder")
    try:
        time.sleep(2.5)
        assert tagged_infer(srv, "m", [0.0]) == (200, "1", [1.0])
        assert srv.get("/v2/models/m").json()["versions"] == ["1"]
    finally:
        for d in ("abc", "-1", "0", "1.5", "99999999999999999999999", ".tmp"):
            shutil.rmtree(repo / "m" / d)
        os.remove(repo / "loosefile")


def test_model_removed_while_requests_run(srv, good, repo):
    """A whole model folder vanishing under load: requests end in 200 or a
    clean 404/503, never a dropped connection."""
    make_tagged_repo(repo, "gone", [1], work=steps_for(5))
    wait_for(lambda: tagged_infer(srv, "gone", [0.0])[0] == 200, what="gone loaded")
    results, stop = [], threading.Event()
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.0]}]}

    def client():
        session = requests.Session()
        while not stop.is_set():
            try:
                results.append(session.post(f"{srv.url}/v2/models/gone/infer", json=body, timeout=30).status_code)
            except Exception as e:
                results.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    shutil.rmtree(repo / "gone")
    wait_for(lambda: srv.get("/v2/models/gone/ready").status_code != 200, what="gone unloaded")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(60)
    assert set(results) <= {200, 404, 503}, [r for r in results if r not in (200, 404, 503)][:3]
    assert 200 in results


def test_log_is_json_lines(srv):
    """After all of the above, stderr is still JSON lines only (issue 3: logs
    are JSON lines), each with a timestamp, a level and a message: nothing
    that libmicrohttpd prints by itself on bad connections leaks through."""
    bad = []
    for line in srv.stderr().splitlines():
        if not line.strip():
            continue
        try:
            j = json.loads(line)
            assert isinstance(j, dict) and {"ts", "level", "msg"} <= set(j)
        except (ValueError, AssertionError):
            bad.append(line)
    assert not bad, f"{len(bad)} stderr lines are not JSON log records, e.g. {sorted(set(bad))[:5]}"
