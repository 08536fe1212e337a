"""Real architectures exported from torch, run in tern, compared with torch.

Each case is one model x opset x batch: `tern run` writes every graph output
as .npy, and each must have torch's dtype and shape and lie within
max(1e-4 * max|reference|, 1e-5) of torch's output everywhere.

    TERN_BIN=build/tern TERN_MODELS_DIR=build/models \\
        /usr/bin/python3 -m pytest -v -s tests/models

TERN_BIN is the tern binary, TERN_MODELS_DIR the build folder that holds the
generated models (export.py fills it on first use and when export.py changes).
Without them the defaults are build/tern and build/models of the checkout.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import export

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TERN_BIN = os.environ.get("TERN_BIN", os.path.join(ROOT, "build", "tern"))
MODELS_DIR = os.environ.get("TERN_MODELS_DIR", os.path.join(ROOT, "build", "models"))
RUN_TIMEOUT = 900  # seconds for one `tern run`; the sanitizer build is slow

REL_TOL = 1e-4
ABS_TOL = 1e-5


@pytest.fixture(scope="session")
def manifest():
    if not export.is_current(MODELS_DIR):
        subprocess.run([sys.executable, export.__file__, MODELS_DIR], check=True)
    with open(os.path.join(MODELS_DIR, "manifest.json")) as f:
        return json.load(f)


def output_file(out_dir, name):
    """Where `tern run` writes graph output `name`."""
    return os.path.join(out_dir, re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".npy")


def tern_check(model_path):
    r = subprocess.run([TERN_BIN, "check", model_path], capture_output=True, text=True,
                       timeout=120)
    return (r.stdout + r.stderr).strip()


@pytest.mark.parametrize("batch", export.BATCHES)
@pytest.mark.parametrize("opset", export.OPSETS)
@pytest.mark.parametrize("model", export.MODELS)
def test_model(manifest, model, opset, batch, tmp_path):
    assert os.access(TERN_BIN, os.X_OK), f"no tern binary at {TERN_BIN} (set TERN_BIN)"
    entry = manifest["models"][model]
    files = entry["batches"][str(batch)]
    model_path = os.path.join(MODELS_DIR, entry["onnx"][str(opset)])

    cmd = [TERN_BIN, "run", model_path, "--output-dir", str(tmp_path)]
    for name, rel in files["inputs"].items():
        cmd += ["--input", f"{name}={os.path.join(MODELS_DIR, rel)}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\nexit {r.returncode}\n{r.stdout}{r.stderr}\n"
                    f"--- tern check {model_path}:\n{tern_check(model_path)}",
                    pytrace=False)

    failures = []
    for name, rel in files["outputs"].items():
        ref = np.load(os.path.join(MODELS_DIR, rel))
        path = output_file(str(tmp_path), name)
        assert os.path.isfile(path), f"tern wrote no output {name} ({path})"
        got = np.load(path)
        assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype}, torch {ref.dtype}"
        assert got.shape == ref.shape, f"{name}: shape {got.shape}, torch {ref.shape}"
        scale = float(np.max(np.abs(ref)))
        tol = max(REL_TOL * scale, ABS_TOL)
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        ok = diff <= tol  # False for NaN
        print(f"\n{model} opset {opset} batch {batch} {name}: max|diff| {diff:.3g} "
              f"tol {tol:.3g} (max|torch| {scale:.3g}) {'ok' if ok else 'FAIL'}", end=" ")
        if not ok:
            failures.append(f"{name}: max|diff| {diff:.3g} > tol {tol:.3g}")
    assert not failures, "; ".join(failures)
