#!/usr/bin/env python3
"""Single-device GPT training throughput: troupe beside PyTorch, same shapes, same run, one ratio.

Shapes (the peer's, ../shared/baselines/train_gpt.py): vocab 256, n_embd 256, 4 layers, 4 heads,
block 128, batch 16, AdamW lr 1e-3 betas (0.9, 0.95) weight decay 0.1. Both sides use --threads
threads (default: every core of this machine) and run alternately, --rounds times, so load from the
rest of the machine falls on both; each side's figure is its median step rate over steps after the
warm-up. Prints a final JSON line with both figures and the ratio troupe / PyTorch.

Run: python3 bench/bench_train.py [--threads N] [--steps 60] [--rounds 2]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5


def troupe_rate(binary, threads, steps, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump,
               "--set", f"train.threads={threads}", "--set", "model.n_layer=4", "--set", "model.n_head=4",
               "--set", "model.n_embd=256", "--set", "model.block_size=128", "--set", "train.batch_size=16",
               "--set", "optim.kind=adamw", "--set", "optim.lr=1e-3", "--set", "optim.beta2=0.95",
               "--set", "optim.weight_decay=0.1", "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]
        for kv in extra:
            cmd += ["--set", kv]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(dump)]
    rates = [r["tokens_per_s"] for r in rows[WARMUP:]] or [r["tokens_per_s"] for r in rows]
    return statistics.median(rates), rows[-1]["loss"]


def torch_rate(baseline, threads, steps):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(["/usr/bin/python3", baseline, "--threads", str(threads), "--steps", str(steps), "--runs", "1"],
                         check=True, capture_output=True, text=True, env=env, cwd=os.path.dirname(baseline)).stdout
    m = re.search(r"RESULT gpt_single_t\d+ tokens_per_s median=(\d+)", out)
    if not m:
        sys.exit("bench_train: could not read the PyTorch baseline's RESULT line:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "..", "shared", "baselines", "train_gpt.py"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_train: {a.troupe} not found; build first (scripts/build)")
    have_torch = os.path.exists(a.baseline) and subprocess.run(
        ["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    ours, theirs = [], []
    for r in range(a.rounds):
        rate, loss = troupe_rate(a.troupe, a.threads, a.steps)
        ours.append(rate)
        print(f"round {r}: troupe  {rate:8.0f} tokens/s (loss after {a.steps} steps {loss:.4f})", flush=True)
        if have_torch:
            theirs.append(torch_rate(a.baseline, a.threads, a.steps))
            print(f"round {r}: pytorch {theirs[-1]:8.0f} tokens/s", flush=True)
    result = {"bench": "train_gpt", "threads": a.threads, "troupe_tokens_per_s": round(statistics.median(ours))}
    if theirs:
        result["pytorch_tokens_per_s"] = round(statistics.median(theirs))
        result["ratio"] = round(statistics.median(ours) / statistics.median(theirs), 3)
    else:
        print("bench_train: PyTorch baseline not available (/usr/bin/python3 with torch, ../shared/baselines); troupe only")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
