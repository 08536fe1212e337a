"""Builds the model fixtures of tests/models: real architectures exported from
torch, with torch's own outputs as the reference tern must match.

    /usr/bin/python3 tests/models/export.py OUT_DIR

Run it with Debian's python (python3-torch 1.13, python3-torchvision 0.14,
python3-onnx). For every model in MODELS it writes, in OUT_DIR:

    <model>_op<opset>.onnx          one per opset, batch dimension dynamic
    <model>_b<batch>/in/<name>.npy  random inputs, one per graph input
    <model>_b<batch>/ref/<name>.npy torch's output, one per graph output
    <model>.json                    what was written, and the cache key
    manifest.json                   all of the above, written last

Everything is seeded, nothing is downloaded (torchvision models have random
weights). The cache key is a hash of this file and of the torch, torchvision,
onnx and numpy versions: a model whose <model>.json carries the current key is
not built again, and when manifest.json carries it nothing is done at all,
not even importing torch (callers check with is_current()). Generated files
stay in the build folder; they never go into git.
"""

import fcntl
import hashlib
import json
import os
import sys
import time

MODELS = ("mlp", "resnet18", "mobilenet_v2", "bert")
OPSETS = (13, 17)
BATCHES = (1, 8)

BERT_VOCAB = 30522
BERT_HIDDEN = 128
BERT_HEADS = 2
BERT_LAYERS = 2
BERT_FFN = 512
BERT_SEQ = 128
IMAGE_SIZE = 224


def cache_key():
    """A hash of this file and of the versions of the packages that produce
    the models; read from package metadata, so torch need not be imported."""
    from importlib.metadata import version

    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    for package in ("torch", "torchvision", "onnx", "numpy"):
        h.update(f"\0{package}={version(package)}".encode())
    return h.hexdigest()


def is_current(out_dir):
    """True when out_dir holds a complete export made with the current
    cache_key(). Needs neither torch nor numpy, so a caller can test it
    cheaply."""
    try:
        with open(os.path.join(out_dir, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    if manifest.get("key") != cache_key():
        return False
    return all(_files_present(out_dir, m) for m in manifest["models"].values())


def _files_present(out_dir, entry):
    files = list(entry["onnx"].values())
    for b in entry["batches"].values():
        files += list(b["inputs"].values()) + list(b["outputs"].values())
    return all(os.path.isfile(os.path.join(out_dir, p)) for p in files)


# ---------------------------------------------------------------- the models
# Builders import torch lazily so that test_models.py can import this module
# for its constants without paying for torch.


def build_mlp():
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 10), nn.Softmax(dim=1))
    inputs = {"input": lambda g, b: torch.randn(b, 784, generator=g)}
    return model, inputs, ["probs"]


def _calibrate_batchnorm(model, make_input):
    """torchvision initialises BatchNorm to the identity (mean 0, var 1,
    scale 1, shift 0), under which mobilenet_v2's activations vanish (outputs
    near 1e-9, the same for every input) and the test would prove nothing.
    Give it what training would: running statistics measured on one batch of
    inputs, and a random scale and shift, so that activations keep unit size,
    the outputs depend on the input, and the exporter's Conv+BN folding has
    real numbers to fold."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        model(make_input(gen, 8))
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    model.eval()


def _torchvision(name):
    import torch
    import torchvision

    size = IMAGE_SIZE

    def image(g, b):
        return torch.randn(b, 3, size, size, generator=g)

    model = getattr(torchvision.models, name)(weights=None)
    _calibrate_batchnorm(model, image)
    return model, {"input": image}, ["logits"]


def build_resnet18():
    return _torchvision("resnet18")


def build_mobilenet_v2():
    return _torchvision("mobilenet_v2")


def build_bert():
    """A 2-layer BERT-style encoder written out in plain torch: word and
    position embeddings, post-LN layers of 2-head self-attention and a GELU
    feed-forward, a tanh pooler on the first token. The int64 attention mask
    (1 = token, 0 = padding) becomes an additive mask inside the graph, as in
    Hugging Face's BERT, so the export has the Cast/Sub/Mul chain real
    encoders carry."""
    import math
    import torch
    from torch import nn

    H, heads, seq = BERT_HIDDEN, BERT_HEADS, BERT_SEQ

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)
            self.out = nn.Linear(H, H)
            self.head_dim = H // heads

        def split(self, x):  # [b, s, H] -> [b, heads, s, head_dim]
            return x.view(x.shape[0], -1, heads, self.head_dim).transpose(1, 2)

        def forward(self, x, add_mask):
            q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + add_mask
            ctx = torch.softmax(scores, dim=-1) @ v
            ctx = ctx.transpose(1, 2).reshape(x.shape[0], -1, H)
            return self.out(ctx)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.ln1 = Attention(), nn.LayerNorm(H, eps=1e-12)
            self.ffn = nn.Sequential(nn.Linear(H, BERT_FFN), nn.GELU(), nn.Linear(BERT_FFN, H))
            self.ln2 = nn.LayerNorm(H, eps=1e-12)

        def forward(self, x, add_mask):
            x = self.ln1(x + self.attn(x, add_mask))
            return self.ln2(x + self.ffn(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(BERT_VOCAB, H)
            self.pos = nn.Embedding(seq, H)
            self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0))
            self.ln = nn.LayerNorm(H, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(BERT_LAYERS))
            self.pool = nn.Linear(H, H)
            # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

        def forward(self, input_ids, attention_mask):
            x = self.ln(self.word(input_ids) + self.pos(self.position_ids))
            add_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.layers:
                x = layer(x, add_mask)
            return x, torch.tanh(self.pool(x[:, 0]))

    def ids(g, b):
        return torch.randint(0, BERT_VOCAB, (b, seq), generator=g, dtype=torch.int64)

    def mask(g, b):
        # Each row is a sentence of random length followed by padding.
        lengths = torch.randint(seq // 8, seq + 1, (b,), generator=g)
        return (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)

    inputs = {"input_ids": ids, "attention_mask": mask}
    return Encoder(), inputs, ["last_hidden_state", "pooler_output"]


BUILDERS = {
    "mlp": build_mlp,
    "resnet18": build_resnet18,
    "mobilenet_v2": build_mobilenet_v2,
    "bert": build_bert,
}


# ---------------------------------------------------------------- export


def _save_npy(path, array):
    import numpy as np

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def _check_onnx(path, input_names, output_names):
    """The exported graph is valid and its batch dimension is symbolic."""
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model)
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in input_names or vi.name in output_names:
            dim0 = vi.type.tensor_type.shape.dim[0]
            if not dim0.dim_param:
                raise RuntimeError(f"{path}: {vi.name} has a fixed batch dimension")


def _check_input_sensitive(name, output_names, outs):
    """A reference whose rows hardly differ (weights that wash the input out)
    would let a kernel that ignores its input pass: the rows of a batch must
    differ by far more than the tolerance test_models.py allows."""
    for n, t in zip(output_names, outs):
        spread = float((t.max(dim=0).values - t.min(dim=0).values).max())
        tol = 1e-4 * float(t.abs().max())
        if not spread > 100 * tol:
            raise RuntimeError(f"{name}: output {n} hardly depends on the input "
                               f"(rows differ by {spread:.3g}, tolerance {tol:.3g})")


def export_model(name, out_dir, key):
    import torch

    torch.manual_seed(0)
    model, input_makers, output_names = BUILDERS[name]()
    model.eval()
    input_names = list(input_makers)
    entry = {"key": key, "inputs": input_names, "outputs": output_names,
             "onnx": {}, "batches": {}}

    for batch in BATCHES:
        gen = torch.Generator().manual_seed(1000 + batch)
        args = tuple(make(gen, batch) for make in input_makers.values())
        with torch.no_grad():
            outs = model(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        files = {"inputs": {}, "outputs": {}}
        for kind, names, tensors in (("in", input_names, args), ("ref", output_names, outs)):
            for n, t in zip(names, tensors):
                rel = os.path.join(f"{name}_b{batch}", kind, f"{n}.npy")
                _save_npy(os.path.join(out_dir, rel), t.numpy())
                files["inputs" if kind == "in" else "outputs"][n] = rel
        entry["batches"][str(batch)] = files
        if batch > 1:
            _check_input_sensitive(name, output_names, outs)
        if batch == BATCHES[0]:
            export_args = args

    dynamic = {n: {0: "batch"} for n in input_names + output_names}
    for opset in OPSETS:
        rel = f"{name}_op{opset}.onnx"
        path = os.path.join(out_dir, rel)
        tmp = path + ".tmp"
        with torch.no_grad():
            torch.onnx.export(model, export_args, tmp, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic, do_constant_folding=True)
        _check_onnx(tmp, input_names, output_names)
        os.replace(tmp, path)
        entry["onnx"][str(opset)] = rel
    return entry


def log(msg):
    print(f"export: {msg}", file=sys.stderr)


def export_all(out_dir):
    """Exports every model not already exported with the current key and
    writes manifest.json. Serialised by a lock file, so concurrent callers
    sharing out_dir wait for one another instead of racing."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(out_dir):
            return
        key = cache_key()
        models = {}
        for name in MODELS:
            stamp = os.path.join(out_dir, f"{name}.json")
            try:
                with open(stamp) as f:
                    entry = json.load(f)
                if entry.get("key") == key and _files_present(out_dir, entry):
                    models[name] = entry
                    log(f"{name}: up to date")
                    continue
            except (OSError, ValueError):
                pass
            t0 = time.monotonic()
            entry = export_model(name, out_dir, key)
            with open(stamp + ".tmp", "w") as f:
                json.dump(entry, f, indent=1)
            os.replace(stamp + ".tmp", stamp)
            models[name] = entry
            log(f"{name}: {time.monotonic() - t0:.1f} s")
        manifest = {"key": key, "models": models}
        path = os.path.join(out_dir, "manifest.json")
        with open(path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(path + ".tmp", path)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    export_all(argv[1])
    log(f"done in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
