#!/usr/bin/env python3
"""Single-device stacked-LSTM language-model training throughput: troupe beside PyTorch, same shapes, same run, one ratio.

Shapes: model.kind = lstm with --layers (default 2) LSTM layers of --hidden (default 64) over bytes
(vocabulary 256), --block (default 64) steps of truncated back-propagation, batch --batch (default 16),
AdamW lr 1e-3. The PyTorch side is the same network (tests/torch_ref/lstm_ref.py: nn.Embedding, nn.LSTM,
nn.Linear) fed random bytes of the same shape; troupe trains on its corpus. Both sides use --threads threads
(default: every core) and run alternately, --rounds times, so load from the rest of the machine falls on
both; each side's figure is its median step rate in tokens/s over the steps after the warm-up. Prints a
final JSON line with both figures and the ratio troupe / PyTorch.

Run: python3 bench/bench_lstm.py [--threads N] [--steps 40] [--rounds 2] [--layers 2] [--hidden 64]
     [--block 64] [--batch 16]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5


def troupe_rate(binary, a):
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(a.steps), "--dump-losses", dump,
               "--set", "model.kind=lstm", "--set", f"model.n_layer={a.layers}", "--set", f"model.n_embd={a.hidden}",
               "--set", f"model.block_size={a.block}", "--set", f"train.threads={a.threads}",
               "--set", f"train.batch_size={a.batch}", "--set", "optim.kind=adamw", "--set", "optim.lr=1e-3",
               "--set", "train.eval_every=0", "--set", "train.eval_batches=1", "--set", "data.order=sequential"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(dump)]
    rates = [r["tokens_per_s"] for r in rows[WARMUP:]] or [r["tokens_per_s"] for r in rows]
    return statistics.median(rates), rows[-1]["loss"]


def torch_worker(a):
    """Runs in /usr/bin/python3 with torch: prints the median tokens/s of a.steps AdamW steps."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
    from lstm_ref import LstmLM
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = LstmLM(a.layers, a.hidden, 256)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (a.batch, a.block))
    y = torch.randint(0, 256, (a.batch, a.block))
    rates = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rates.append(a.batch * a.block / (time.perf_counter() - t0))
    print(json.dumps({"tokens_per_s": statistics.median(rates[WARMUP:] or rates)}))


def torch_rate(a):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", "--threads", str(a.threads),
           "--steps", str(a.steps), "--batch", str(a.batch), "--layers", str(a.layers), "--hidden", str(a.hidden),
           "--block", str(a.block)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_lstm: {a.troupe} not found; build first (scripts/build)")
    have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    ours, theirs = [], []
    for r in range(a.rounds):
        rate, loss = troupe_rate(a.troupe, a)
        ours.append(rate)
        print(f"round {r}: troupe  {rate:9.0f} tokens/s (loss after {a.steps} steps {loss:.4f})", flush=True)
        if have_torch:
            theirs.append(torch_rate(a))
            print(f"round {r}: pytorch {theirs[-1]:9.0f} tokens/s", flush=True)
    result = {"bench": "train_lstm", "threads": a.threads, "batch": a.batch, "block": a.block, "layers": a.layers,
              "hidden": a.hidden, "troupe_tokens_per_s": round(statistics.median(ours))}
    if theirs:
        result["pytorch_tokens_per_s"] = round(statistics.median(theirs))
        result["ratio"] = round(statistics.median(ours) / statistics.median(theirs), 3)
    else:
        print("bench_lstm: PyTorch not importable by /usr/bin/python3; troupe only")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
