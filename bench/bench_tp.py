#!/usr/bin/env python3
"""Tensor parallelism at T = 2: troupe's shards beside PyTorch 2.x DTensor tensor parallelism, and beside troupe
on one device, same GPT shapes and threads, alternating rounds in the same run.

Shapes (the peer's, ../shared/baselines/tp_torch.py): vocab 256, width 256, 4 layers, 4 heads, block 128,
batch 16, AdamW. Every side uses --threads threads in all (default 2): troupe's single device train.threads =
threads; troupe at T = 2 threads / 2 per shard, its shards as actors of one process (comm.transport = inproc)
and as processes over tcp (--forms); the peer `tp_torch.py --world 2 --threads threads` (gloo, 2 processes).
Non-deterministic (troupe's default). Each figure is the median over rounds of each run's median step rate
after the warm-up.

The peer needs PyTorch >= 2.4 (torch.distributed.tensor.parallel): it runs under every PyTorch that
bench/torch_peers.py finds with DTensor (Debian's 1.13 has none), setting up the 2.x one with --setup-torch2
(scripts/setup-torch2), and the faster one is named. Prints one JSON line per run and a final line with
tokens/s, the ratio troupe T=2 / DTensor (target >= 1.5) and troupe's T = 2 step time over its single-device
step time (target <= 1.3), with the load average.

A form with "+sp" (--forms inproc,inproc+sp) runs it with parallel.sequence_parallel = true.

Run: python3 bench/bench_tp.py [--threads 2] [--steps 30] [--rounds 3] [--forms inproc,tcp] [--setup-torch2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from baseline_result import baseline_result
from bench_train import ROOT, cpu_peak, mfu_of, troupe_rate
from torch_peers import peers

DTENSOR_CHECK = "import torch.distributed.tensor.parallel"


def dtensor_rate(python, baseline, threads, steps, port):
    return baseline_result("bench_tp", python, baseline,
                           ["--world", 2, "--threads", threads, "--steps", steps, "--port", port],
                           r"RESULT tp_gpt_w2 tokens_per_s median=(\d+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--forms", default="inproc,tcp",
                    help="troupe's T = 2 forms: inproc (actors), tcp (processes); +sp: with sequence parallelism")
    ap.add_argument("--setup-torch2", action="store_true", help="install the PyTorch 2.x peer if it is missing")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "..", "shared", "baselines", "tp_torch.py"))
    a = ap.parse_args()
    if a.threads < 2 or a.threads % 2:
        sys.exit("bench_tp: --threads must be even and >= 2 (T = 2 shards share them equally)")
    forms = [f for f in a.forms.split(",") if f]
    torches = [(label, py) for label, py in peers(a.setup_torch2)
               if subprocess.run([py, "-c", DTENSOR_CHECK], capture_output=True).returncode == 0]
    if not os.path.exists(a.baseline):
        torches = []
    if not torches:
        print("bench_tp: no PyTorch with DTensor tensor parallelism found (Debian's 1.13 has none); run with "
              "--setup-torch2 to install one from PyPI. Comparing troupe with itself only.", file=sys.stderr)
    per_shard = a.threads // 2
    # A form "+sp" (e.g. inproc+sp) adds sequence parallelism (parallel.sequence_parallel = true).
    runs = [("single", a.threads, [])] + [(f"tp2_{f}", per_shard,
                                           ["parallel.tensor=2", f"comm.transport={f.removesuffix('+sp')}"]
                                           + (["comm.address=127.0.0.1:0"] if not f.startswith("inproc") else [])
                                           + (["parallel.sequence_parallel=true"] if f.endswith("+sp") else []))
                                          for f in forms]
    rates = {name: [] for name, _, _ in runs}
    rates.update({label: [] for label, _ in torches})
    port = 29533
    peak = cpu_peak(a.troupe, a.threads)["f32"]  # every side uses a.threads cores in all
    flops_per_token = 0.0  # as troupe counts them; DTensor's model does the same products
    for rnd in range(a.rounds):  # alternating, so the rest of the machine's load falls on every side
        for name, threads, sets in runs:
            rate, loss, flops_per_token = troupe_rate(a.troupe, threads, a.steps, sets)
            rates[name].append(rate)
            print(json.dumps({"bench": "tp", "round": rnd, "config": f"troupe {name}", "threads_per_rank": threads,
                              "tokens_per_s": round(rate), "mfu": mfu_of(rate, flops_per_token, peak), "loss": loss}),
                  flush=True)
        for label, python in torches:
            port += 1  # a fresh port each run: gloo's store may linger in TIME_WAIT
            rate = dtensor_rate(python, a.baseline, a.threads, a.steps, port)
            rates[label].append(rate)
            print(json.dumps({"bench": "tp", "round": rnd, "config": f"{label} DTensor tp2", "tokens_per_s": round(rate),
                              "mfu": mfu_of(rate, flops_per_token, peak)}), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    summary = {"bench": "tp_summary", "threads": a.threads, "steps": a.steps, "rounds": a.rounds,
               "loadavg": [round(x, 2) for x in os.getloadavg()],
               "tokens_per_s": {k: round(v) for k, v in med.items()},
               "f32_peak_flops_per_s": peak, "mfu": {k: mfu_of(v, flops_per_token, peak) for k, v in med.items()}}
    for f in forms:
        # Step time at T = 2 over the single device's: the inverse of the rate ratio (same tokens per step).
        summary[f"tp2_{f}_step_over_single_step"] = round(med["single"] / med[f"tp2_{f}"], 3)
    if torches:
        best = max(torches, key=lambda t: med[t[0]])[0]
        summary["peer"] = f"{best} DTensor (the faster PyTorch)"
        for f in forms:
            summary[f"tp2_{f}_over_dtensor"] = round(med[f"tp2_{f}"] / med[best], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
