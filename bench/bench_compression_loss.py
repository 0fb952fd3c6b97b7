#!/usr/bin/env python3
"""Gradient compression on the GPT example: loss after N steps and bytes on the wire, relative to uncompressed.

Runs `troupe train` (the default GPT: 4 layers, n_embd 256, batch 16, the built-in corpus) with
parallel.data = --replicas and each comm.compression in turn, same seed and batches, and prints one
table: final train loss (mean of the last 10 steps), validation loss, their ratio to the uncompressed run,
and the bytes each replica sent per step (compressed, and what the plain ring would send).

Run: python3 bench/bench_compression_loss.py [--steps 200] [--replicas 2]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = ["none", "fp16", "bf16", "int8", "topk:0.01", "topk:0.1", "powersgd:4", "powersgd:16"]


def run(binary, spec, steps, replicas, threads):
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump, "--set", f"parallel.data={replicas}",
               "--set", f"comm.compression={spec}", "--set", f"train.threads={threads}", "--set", "train.eval_every=0"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = [json.loads(line) for line in open(dump)]
    tail = rows[-10:]
    train = sum(r["loss"] for r in tail) / len(tail)
    val = float(re.search(r"validation loss ([\d.]+)", out).group(1))
    m = re.search(r"([\d.]+) MB sent in \d+ buckets(?: \(([\d.]+) MB uncompressed\))?", out)
    sent = float(m.group(1))
    plain = float(m.group(2)) if m.group(2) else sent
    return train, val, sent, plain


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_compression_loss: {a.troupe} not found; build first (scripts/build)")
    results = {}
    for spec in a.specs.split(","):
        results[spec] = run(a.troupe, spec, a.steps, a.replicas, a.threads)
        print(f"  ran {spec}", file=sys.stderr, flush=True)
    base_train, base_val = results["none"][0], results["none"][1]
    print(f"GPT (default), {a.replicas} replicas, {a.steps} steps; train loss = mean of the last 10 steps")
    print(f"{'compression':12s} {'train loss':>10s} {'ratio':>6s} {'val loss':>9s} {'ratio':>6s} {'MB/step sent':>13s} {'vs ring':>8s}")
    for spec, (train, val, sent, plain) in results.items():
        print(f"{spec:12s} {train:10.4f} {train / base_train:6.3f} {val:9.4f} {val / base_val:6.3f} {sent:13.3f} "
              f"{plain / sent if sent else 0:7.1f}x")
    print(json.dumps({"bench": "compression_loss", "steps": a.steps, "replicas": a.replicas,
                      "results": {k: {"train_loss": round(v[0], 4), "val_loss": round(v[1], 4), "mb_sent": v[2],
                                      "mb_uncompressed": v[3]} for k, v in results.items()}}))


if __name__ == "__main__":
    main()
