#!/usr/bin/python3
"""An independent PyTorch reference for troupe's DeepFM (models/wide_deep.h, kind deepfm), and its parity check.

Runs `troupe_deepfm_trace` (tests/deepfm_trace.cpp: troupe's single-process DeepFM training, which the
parameter-server tests hold equal to sync parameter servers) for the initial weights, the batches and troupe's
per-step losses; trains the same model on them with torch.optim; and fails unless step 0 agrees within 1e-5 and
every step within 1e-3 (relative). Exit 0 ok, 1 mismatch, 77 no torch.

    /usr/bin/python3 deepfm_ref.py --trace build/tests/troupe_deepfm_trace --workdir /tmp/deepfm \
        --steps 20 --set optim.kind=adam --set optim.lr=0.01

The contract, from docs/parameter-servers.md and models/wide_deep.h (nothing here is taken from troupe's C++):
  logit = wide.bias + sum_f w[wide_row_f]                                (first order: one weight per field id)
        + 0.5 * sum_k [(sum_f v_{f,k})^2 - sum_f v_{f,k}^2]             (FM over the field embeddings v_f)
        + MLP(concat(v_0, ..., v_{F-1}, dense))                          (Linear, ReLU, ..., Linear -> 1)
  loss  = mean binary cross-entropy with logits.
Dense parameters: one torch.optim optimizer (one group). Each table (deep.embedding.{f}, wide.weight) updates
lazily, as torch.optim.SparseAdam does for Adam: only the rows the batch touches, and only their optimizer
state, change — here by running the same torch.optim class on a parameter made of those rows, with their
state gathered from full-size state tensors (zeros for rows never touched) and the table's step count
(the number of updates the table has had), and scattering values and state back.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"deepfm_ref: skipped, {e}", file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_ref import make_config, make_optimizer  # noqa: E402  (the optimizer settings, as troupe's --set)

DTYPES = {"F32": "<f4", "I32": "<i4", "I64": "<i8"}


def read_safetensors(path):
    """{name: numpy array} of a safetensors file with F32, I32 or I64 tensors."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = blob[8 + header_len:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out


class LazyTable:
    """A table whose optimizer touches only the rows a batch uses (torch.optim.SparseAdam's rule, any optimizer)."""

    def __init__(self, value, config):
        self.value = torch.tensor(value)
        self.config = config
        self.state = {}   # name -> full-size tensor
        self.steps = 0    # updates this table has had

    def update(self, grad_full, rows):
        """One optimizer step of `rows` (unique, increasing) with their rows of the full gradient."""
        param = torch.nn.Parameter(self.value[rows].clone())
        param.grad = grad_full[rows].clone()
        opt, _ = make_optimizer([param], self.config)
        if self.steps > 0:
            st = {k: v[rows].clone() for k, v in self.state.items()}
            if self.config["optim.kind"] in ("adam", "adamw", "rmsprop"):
                st["step"] = torch.tensor(float(self.steps))
            opt.state[param] = st
        opt.step()
        self.steps += 1
        self.value[rows] = param.detach()
        for k, v in opt.state[param].items():
            if k == "step" or v is None:
                continue
            if k not in self.state:
                self.state[k] = torch.zeros_like(self.value)
            self.state[k][rows] = v


def forward(dense_params, tables, model, fields, wide_rows, dense, fields_n, dim):
    emb = [tables[f"deep.embedding.{f}"][fields[:, f]] for f in range(fields_n)]  # each [B, dim]
    v = torch.stack(emb, dim=1)                                                     # [B, F, dim]
    fm = 0.5 * (v.sum(dim=1).pow(2) - v.pow(2).sum(dim=1)).sum(dim=1)
    first = tables["wide.weight"][wide_rows].sum(dim=(1, 2)) + dense_params["wide.bias"][0]
    h = torch.cat(emb + [dense], dim=1)
    layers = len(model["hidden"]) + 1
    for k in range(layers):
        h = F.linear(h, dense_params[f"deep.layers.{k}.weight"], dense_params[f"deep.layers.{k}.bias"])
        if k + 1 < layers:
            h = torch.relu(h)
    return first + h[:, 0] + fm


def train(workdir, sets, steps):
    trace = json.load(open(os.path.join(workdir, "troupe.json")))
    model, B = trace["model"], trace["batch_size"]
    init = read_safetensors(os.path.join(workdir, "init.safetensors"))
    batches = read_safetensors(os.path.join(workdir, "batches.safetensors"))
    config = make_config(sets)
    table_names = [f"deep.embedding.{f}" for f in range(model["fields"])] + ["wide.weight"]
    dense_params = {n: torch.nn.Parameter(torch.tensor(a)) for n, a in init.items() if n not in table_names}
    dense_opt, _ = make_optimizer(list(dense_params.values()), config)
    tables = {n: LazyTable(init[n], config) for n in table_names}
    losses = []
    for s in range(steps):
        sl = slice(s * B, (s + 1) * B)
        fields = torch.tensor(batches["fields"][sl].astype(np.int64))
        wide_rows = torch.tensor(batches["wide_rows"][sl].astype(np.int64))
        leaf = {n: t.value.clone().requires_grad_(True) for n, t in tables.items()}
        logits = forward(dense_params, leaf, model, fields, wide_rows, torch.tensor(batches["dense"][sl]),
                         model["fields"], model["embed_dim"])
        loss = F.binary_cross_entropy_with_logits(logits, torch.tensor(batches["labels"][sl]))
        dense_opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        dense_opt.step()
        touched = {f"deep.embedding.{f}": fields[:, f] for f in range(model["fields"])}
        touched["wide.weight"] = wide_rows.flatten()
        for n, t in tables.items():
            t.update(leaf[n].grad, torch.unique(touched[n]))
    return trace["losses"][:steps], losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", required=True, help="the troupe_deepfm_trace program")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], help="key=value: train.batch_size and optim.*")
    args = ap.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    subprocess.run([args.trace, args.workdir, str(args.steps)] + args.set, check=True)
    torch.set_num_threads(1)
    mine, theirs = train(args.workdir, args.set, args.steps)
    worst0 = abs(mine[0] - theirs[0]) / abs(theirs[0])
    worst = 0.0
    print(f"{'step':>4} {'troupe':>12} {'torch':>12} {'rel diff':>10}")
    for s, (a, b) in enumerate(zip(mine, theirs)):
        rel = abs(a - b) / abs(b)
        worst = max(worst, rel)
        print(f"{s:>4} {a:>12.7f} {b:>12.7f} {rel:>10.2e}")
    print(f"step 0 relative difference {worst0:.2e} (bound 1e-5); largest over {args.steps} steps {worst:.2e} "
          f"(bound 1e-3)")
    return 0 if worst0 <= 1e-5 and worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
