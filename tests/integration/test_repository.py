"""The model repository: version policies from config.yaml (long and short
forms), the three control modes (none refuses load/unload; explicit loads
what is asked; poll follows the folder), and the repository index's states.
Every model here is y = x + version, so an answer names its version twice."""
import os
import shutil

import pytest

import v2
from conftest import make_tagged_repo, tagged_infer, wait_for

POLICIES = {
    "default": (None, ["3"]),
    "latest2": ("version_policy:\n  latest:\n    num_versions: 2\n", ["2", "3"]),
    "specific13": ("version_policy:\n  specific:\n    versions: [1, 3]\n", ["1", "3"]),
    "all": ("version_policy:\n  all: {}\n", ["1", "2", "3"]),
    "short_latest": ("version_policy:\n  latest: 2\n", ["2", "3"]),
    "short_specific": ("version_policy:\n  specific: [2]\n", ["2"]),
    "short_all": ("version_policy: all\n", ["1", "2", "3"]),
}


@pytest.fixture(scope="module")
def policy_srv(tmp_path_factory):
    from conftest import Server
    repo = tmp_path_factory.mktemp("repo")
    for name, (cfg, _) in POLICIES.items():
        make_tagged_repo(repo, name, [1, 2, 3], config=cfg)
    s = Server(repo, [], log_dir=str(tmp_path_factory.mktemp("logs"))).start()
    yield s
    s.stop()


@pytest.mark.parametrize("model", list(POLICIES))
def test_version_policy(policy_srv, model):
    srv = policy_srv
    want = POLICIES[model][1]
    r = srv.get(f"/v2/models/{model}")
    assert r.status_code == 200, r.text
    assert sorted(r.json()["versions"]) == want
    for v in ("1", "2", "3"):
        ready = srv.get(f"/v2/models/{model}/versions/{v}/ready").status_code
        status, version, y = tagged_infer(srv, model, [1.0], version=v)
        if v in want:
            assert ready == 200
            assert (status, version, y) == (200, v, [1.0 + int(v)])
        else:
            assert ready in (400, 404), (model, v, ready)
            assert status in (404, 503), (model, v, status, y)
    # no version in the URL: the highest one the policy serves
    assert tagged_infer(srv, model, [0.0])[:2] == (200, want[-1])
    idx = {(e["name"], str(e.get("version"))): e["state"] for e in srv.index() if e["name"] == model}
    for v in want:
        assert idx[(model, v)] == "READY", idx


def test_mode_none_refuses_load_unload(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "m", [1])
    srv = serve(tmp_path / "repo")  # default mode: none
    for op in ("load", "unload"):
        r = srv.post(f"/v2/repository/models/m/{op}")
        assert r.status_code == 400, (op, r.status_code, r.text)
        assert "none" in v2.error_of(r)
    assert tagged_infer(srv, "m", [1.0]) == (200, "1", [2.0])


def test_explicit_load_unload(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "a", [1])
    make_tagged_repo(repo, "b", [1, 2])
    srv = serve(repo, "--model-control-mode", "explicit", "--load-model", "a")
    assert srv.get("/v2/models/a/ready").status_code == 200
    # b is in the repository but not loaded: known, not ready
    assert srv.get("/v2/models/b/ready").status_code == 400
    status, _, err = tagged_infer(srv, "b", [1.0])
    assert status == 503, err
    assert "b" in err and "not ready" in err
    states = {(e["name"], str(e.get("version", ""))): e["state"] for e in srv.index()}
    assert states[("a", "1")] == "READY"
    assert any(n == "b" and s != "READY" for (n, _), s in states.items()), states
    assert not any(e["name"] == "b" for e in srv.index(ready=True))

    r = srv.post("/v2/repository/models/b/load")
    assert r.status_code == 200, r.text
    assert srv.get("/v2/models/b/ready").status_code == 200
    assert tagged_infer(srv, "b", [1.0]) == (200, "2", [3.0])
    assert any(e["name"] == "b" and str(e["version"]) == "2" for e in srv.index(ready=True))

    r = srv.post("/v2/repository/models/b/unload")
    assert r.status_code == 200, r.text
    assert srv.get("/v2/models/b/ready").status_code == 400
    status, _, err = tagged_infer(srv, "b", [1.0])
    assert status == 503, err
    # a was untouched
    assert tagged_infer(srv, "a", [1.0]) == (200, "1", [2.0])
    # load again after unload
    assert srv.post("/v2/repository/models/b/load").status_code == 200
    assert tagged_infer(srv, "b", [1.0]) == (200, "2", [3.0])


def test_explicit_load_unknown(serve, tmp_path):
    make_tagged_repo(tmp_path / "repo", "a", [1])
    srv = serve(tmp_path / "repo", "--model-control-mode", "explicit")
    r = srv.post("/v2/repository/models/ghost/load")
    assert r.status_code == 404, r.text
    assert "ghost" in v2.error_of(r)
    r = srv.post("/v2/repository/models/ghost/unload")
    assert r.status_code == 404, r.text
    assert "ghost" in v2.error_of(r)


def test_explicit_load_all_at_start(serve, tmp_path):
    repo = tmp_path / "repo"
    for m in ("a", "b", "c"):
        make_tagged_repo(repo, m, [1])
    srv = serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    for m in ("a", "b", "c"):
        assert srv.get(f"/v2/models/{m}/ready").status_code == 200


def test_explicit_repeatable_load_model(serve, tmp_path):
    repo = tmp_path / "repo"
    for m in ("a", "b", "c"):
        make_tagged_repo(repo, m, [1])
    srv = serve(repo, "--model-control-mode", "explicit", "--load-model", "a", "--load-model", "c")
    assert [srv.get(f"/v2/models/{m}/ready").status_code for m in "abc"] == [200, 400, 200]


def test_explicit_load_rereads_folder(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1])
    srv = serve(repo, "--model-control-mode", "explicit", "--load-model", "m")
    assert tagged_infer(srv, "m", [0.0]) == (200, "1", [1.0])
    make_tagged_repo(repo, "m", [2], config="version_policy:\n  all: {}\n")
    assert srv.post("/v2/repository/models/m/load").status_code == 200
    assert sorted(srv.get("/v2/models/m").json()["versions"]) == ["1", "2"]
    assert tagged_infer(srv, "m", [0.0]) == (200, "2", [2.0])
    assert tagged_infer(srv, "m", [0.0], version=1) == (200, "1", [1.0])


def test_failed_version_keeps_serving_one(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1])
    srv = serve(repo, "--model-control-mode", "explicit", "--load-model", "m")
    (repo / "m" / "2").mkdir()
    (repo / "m" / "2" / "model.onnx").write_bytes(b"this is not an onnx model")
    r = srv.post("/v2/repository/models/m/load")
    assert r.status_code != 200
    assert r.status_code in (400, 500), r.status_code
    assert "2" in v2.error_of(r) or "model.onnx" in v2.error_of(r)
    assert tagged_infer(srv, "m", [0.0]) == (200, "1", [1.0])
    rows = [e for e in srv.index() if e["name"] == "m" and str(e.get("version")) == "2"]
    assert rows and rows[0]["state"] != "READY" and rows[0].get("reason"), srv.index()
    srv.assert_alive()


# -- poll mode ------------------------------------------------------------------

def served_version(srv, model):
    status, version, y = tagged_infer(srv, model, [0.0])
    if status != 200:
        return None
    assert y == [float(version)], (version, y)
    return version


def test_poll_adds_and_removes_versions(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1])
    srv = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    assert served_version(srv, "m") == "1"

    make_tagged_repo(repo, "m", [2])
    wait_for(lambda: served_version(srv, "m") == "2", what="version 2 to be served")
    assert srv.get("/v2/models/m").json()["versions"] == ["2"]
    wait_for(lambda: srv.get("/v2/models/m/versions/1/ready").status_code != 200, what="version 1 unloaded")

    shutil.rmtree(repo / "m" / "2")
    wait_for(lambda: served_version(srv, "m") == "1", what="version 1 back after removing 2")
    wait_for(lambda: srv.get("/v2/models/m/versions/2/ready").status_code != 200, what="version 2 unloaded")


def test_poll_adds_and_removes_models(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1])
    srv = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    assert srv.get("/v2/models/fresh/ready").status_code == 404
    make_tagged_repo(repo, "fresh", [4])
    wait_for(lambda: served_version(srv, "fresh") == "4", what="new model loaded")
    assert any(e["name"] == "fresh" for e in srv.index(ready=True))
    shutil.rmtree(repo / "fresh")
    wait_for(lambda: srv.get("/v2/models/fresh/ready").status_code != 200, what="removed model unloaded")
    status, _, err = tagged_infer(srv, "fresh", [0.0])
    assert status in (404, 503), (status, err)
    assert not any(e["name"] == "fresh" for e in srv.index(ready=True))
    assert served_version(srv, "m") == "1"


def test_poll_honours_policy(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1], config="version_policy:\n  latest:\n    num_versions: 2\n")
    srv = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    make_tagged_repo(repo, "m", [2])
    wait_for(lambda: sorted(srv.get("/v2/models/m").json()["versions"]) == ["1", "2"], what="1 and 2")
    make_tagged_repo(repo, "m", [3])
    wait_for(lambda: sorted(srv.get("/v2/models/m").json()["versions"]) == ["2", "3"], what="2 and 3")
    assert tagged_infer(srv, "m", [0.0], version=2) == (200, "2", [2.0])


def test_poll_load_api_allowed(serve, tmp_path):
    """Triton serves the load/unload API in poll mode too."""
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "m", [1])
    srv = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    r = srv.post("/v2/repository/models/m/load")
    assert r.status_code == 200, r.text
    assert served_version(srv, "m") == "1"


def test_empty_repository_starts(serve, tmp_path):
    (tmp_path / "repo").mkdir()
    srv = serve(tmp_path / "repo")
    assert srv.index() == []
    assert srv.get("/v2/health/ready").status_code == 200


def test_bad_model_does_not_fail_start(serve, tmp_path):
    repo = tmp_path / "repo"
    make_tagged_repo(repo, "good", [1])
    os.makedirs(repo / "bad" / "1")
    (repo / "bad" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage")
    os.makedirs(repo / "badcfg" / "1")
    shutil.copy(repo / "good" / "1" / "model.onnx", repo / "badcfg" / "1" / "model.onnx")
    (repo / "badcfg" / "config.yaml").write_text("version_policy: [unclosed\n  max_batch_size: -3\n")
    srv = serve(repo)
    assert tagged_infer(srv, "good", [0.0]) == (200, "1", [1.0])
    rows = {e["name"]: e for e in srv.index()}
    for name in ("bad", "badcfg"):
        assert name in rows, rows
        assert rows[name]["state"] != "READY" and rows[name].get("reason"), rows[name]
    assert "config.yaml" in rows["badcfg"]["reason"]
    assert srv.get("/v2/models/bad/ready").status_code == 400
    status, _, err = tagged_infer(srv, "bad", [0.0])
    assert status == 503, err
    srv.assert_alive()
    # a failed model is reported in the JSON log
    assert any(l.get("level") in ("error", "warn", "warning") and "bad" in str(l) for l in srv.log_lines())
