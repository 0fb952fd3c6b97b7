#!/usr/bin/env python3
"""Data-parallel step rate against comm.bucket_mb: the measurement behind the bucket size's default.

Runs `troupe train` (the built-in GPT, or --model mlp) with parallel.data = --world replicas, one
thread each, for every bucket size in --buckets-mb and every transport in --transports, in rounds
that alternate the sizes; each cell is the median step rate after a warm-up, over --rounds rounds.
Prints a table (step rate relative to the best size per transport) and a final JSON line.

Run: python3 bench/bench_buckets.py [--world 2] [--buckets-mb 0.25,1,4,16] [--transports inproc,tcp]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5


def steps_per_s(binary, model, world, steps, transport, bucket_mb):
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump, "--set", "train.eval_every=0",
               "--set", f"train.threads={world}", "--set", f"parallel.data={world}",
               "--set", f"comm.transport={transport}", "--set", f"comm.bucket_mb={bucket_mb}"]
        if model == "mlp":
            cmd += ["--set", "model.kind=mlp", "--set", "model.mlp_hidden=1024,1024", "--set", "train.batch_size=256"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(dump)]
    # tokens_per_s / tokens per step is steps/s; the ratio between cells is what matters.
    key = "samples_per_s" if rows and "samples_per_s" in rows[0] else "tokens_per_s"  # the mlp counts samples
    rates = [r[key] for r in rows[WARMUP:]] or [r[key] for r in rows]
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, default=max(2, min(8, os.cpu_count() or 2)))
    ap.add_argument("--model", choices=["gpt", "mlp"], default="gpt")
    ap.add_argument("--buckets-mb", default="0.25,1,4,16")
    ap.add_argument("--transports", default="inproc,tcp")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_buckets: {a.troupe} not found; build first (scripts/build)")
    buckets = [float(b) for b in a.buckets_mb.split(",")]
    transports = a.transports.split(",")
    cells = {(t, b): [] for t in transports for b in buckets}
    for r in range(a.rounds):
        order = buckets if r % 2 == 0 else list(reversed(buckets))
        for t in transports:
            for b in order:
                cells[(t, b)].append(steps_per_s(a.troupe, a.model, a.world, a.steps, t, b))
    med = {k: statistics.median(v) for k, v in cells.items()}
    print(f"{a.model}, {a.world} replicas; median tokens/s (samples/s for the MLP) over {a.rounds} rounds")
    result = {"bench": "bucket_mb", "model": a.model, "world": a.world, "cells": []}
    for t in transports:
        best = max(med[(t, b)] for b in buckets)
        for b in buckets:
            v = med[(t, b)]
            print(f"  {t:7s} bucket_mb={b:<6g} {v:10.0f}  {v / best:5.2f} of the best")
            result["cells"].append({"transport": t, "bucket_mb": b, "rate": round(v, 1)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
