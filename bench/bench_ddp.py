#!/usr/bin/env python3
"""Data-parallel MLP training throughput: troupe beside torch DistributedDataParallel (gloo), same run.

Shapes (the peer's, ../shared/baselines/ddp_mlp.py): MLP 784-1024-1024-10, SGD lr 0.01, global batch 256
split over --world replicas, one thread per replica. troupe runs `troupe train` with parallel.data =
world, train.threads = world (one per replica), as threads (comm.transport=inproc) and — with
--tcp — as processes. Both sides alternate --rounds times; each side's figure is its median steps/s.
Prints a table and a final JSON line with the ratio troupe / DDP.

Run: python3 bench/bench_ddp.py [--world 2] [--steps 60] [--rounds 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from baseline_result import baseline_result
from bench_train import cpu_peak, mfu_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 10
# Model FLOPs per sample of the MLP 784-1024-1024-10 (runtime/model_flops.h: 6 x the sum of in x out).
FLOPS_PER_SAMPLE = 6 * (784 * 1024 + 1024 * 1024 + 1024 * 10)


def troupe_steps_per_s(binary, world, batch, steps, transport):
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump,
               "--set", "model.kind=mlp", "--set", "model.mlp_hidden=1024,1024", "--set", f"train.batch_size={batch}",
               "--set", "optim.kind=sgd", "--set", "optim.lr=0.01", "--set", "train.grad_clip=0",
               "--set", "train.eval_every=0", "--set", f"train.threads={world}",
               "--set", f"parallel.data={world}", "--set", f"comm.transport={transport}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(dump)]
    rates = [r["samples_per_s"] / batch for r in rows[WARMUP:]] or [r["samples_per_s"] / batch for r in rows]
    return statistics.median(rates)


def ddp_steps_per_s(baseline, world, batch, steps):
    return baseline_result("bench_ddp", "/usr/bin/python3", baseline,
                           ["--world", world, "--global-batch", batch, "--steps", steps, "--reps", 3],
                           r"steps_per_s median=([\d.]+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, default=max(2, min(8, os.cpu_count() or 2)))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tcp", action="store_true", help="also run troupe's replicas as processes over TCP")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "..", "shared", "baselines", "ddp_mlp.py"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_ddp: {a.troupe} not found; build first (scripts/build)")
    sides = {"troupe inproc": [], "torch DDP gloo": []}
    if a.tcp:
        sides["troupe tcp"] = []
    for _ in range(a.rounds):
        sides["troupe inproc"].append(troupe_steps_per_s(a.troupe, a.world, a.batch, a.steps, "inproc"))
        if a.tcp:
            sides["troupe tcp"].append(troupe_steps_per_s(a.troupe, a.world, a.batch, a.steps, "tcp"))
        sides["torch DDP gloo"].append(ddp_steps_per_s(a.baseline, a.world, a.batch, a.steps))
    med = {k: statistics.median(v) for k, v in sides.items()}
    peak = cpu_peak(a.troupe, a.world)["f32"]  # both sides use one thread per replica
    mfu = {k: mfu_of(v * a.batch, FLOPS_PER_SAMPLE, peak) for k, v in med.items()}
    print(f"MLP 784-1024-1024-10, global batch {a.batch}, {a.world} replicas, SGD; median steps/s over {a.rounds} rounds")
    for k, v in med.items():
        print(f"  {k:16s} {v:8.2f} steps/s  {v * a.batch:9.0f} samples/s  ratio vs DDP {v / med['torch DDP gloo']:.2f}"
              + (f"  MFU {100 * mfu[k]:5.1f}%" if mfu[k] is not None else ""))
    result = {"bench": "ddp_mlp", "world": a.world, "batch": a.batch,
              "troupe_inproc_steps_per_s": round(med["troupe inproc"], 2),
              "ddp_steps_per_s": round(med["torch DDP gloo"], 2),
              "ratio": round(med["troupe inproc"] / med["torch DDP gloo"], 3), "mfu": mfu}
    if a.tcp:
        result["troupe_tcp_steps_per_s"] = round(med["troupe tcp"], 2)
        result["ratio_tcp"] = round(med["troupe tcp"] / med["torch DDP gloo"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
