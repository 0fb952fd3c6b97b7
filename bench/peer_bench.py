"""The harness the single-model benchmarks beside PyTorch share (bench_cnn.py, bench_lstm.py).

A benchmark gives: how to run troupe's side (`troupe train` keys; its figure is read from --dump-losses), and
a torch worker (a function of its own script run under each PyTorch interpreter that bench/torch_peers.py
finds, printing one JSON line). compare() then runs troupe and every PyTorch alternately, --rounds times, so
load from the rest of the machine falls on all of them; each side's figure is the median over rounds of its
median step rate after the warm-up steps. It prints every figure as it comes, then a summary naming the faster
PyTorch and troupe's ratio to it, each side's MFU (model FLOPs per image or token and the CPU's measured peak as
troupe's run states them, runtime/model_flops.h), and a final JSON line:
  {"bench": ..., <shape keys>, "unit": "images/s", "troupe": 1234, "peers": {"torch 1.13.1": 1000, ...},
   "ratios": {"torch 1.13.1": 1.234, ...}, "faster_peer": "torch 2.x", "ratio": 1.1, "flops_per_unit": ...,
   "peak_flops_per_s": ..., "troupe_mfu": 0.25}
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peers import peers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5  # steps left out of every median: first-touch allocation, thread pools starting


def median_after_warmup(rates):
    return statistics.median(rates[WARMUP:] or rates)


def troupe_rate(binary, steps, sets, key):
    """Runs `troupe train` for `steps` steps with these --set keys; (median `key` after warm-up, last loss,
    (model FLOPs per unit, the CPU's peak FLOP/s) as troupe's closing MFU line states them, or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump]
        for s in sets:
            cmd += ["--set", s]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows = [json.loads(line) for line in open(dump)]
    m = re.search(r"\(([0-9.e+]+) FLOP per \w+, .*?\), MFU .*? of the .*? ([0-9.]+) GFLOP/s;", out)
    flops = (float(m.group(1)), float(m.group(2)) * 1e9) if m else None
    return median_after_warmup([r[key] for r in rows]), rows[-1]["loss"], flops


def torch_rate(python, script, args):
    """Runs `script --torch-worker ARGS` under `python`; the figure its last output line names ("rate")."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [python, os.path.abspath(script), "--torch-worker"] + [str(a) for a in args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["rate"]


def print_worker_rate(rates):
    """In a torch worker: prints the JSON line torch_rate reads."""
    print(json.dumps({"rate": median_after_warmup(rates)}))


def print_torch_step_rate(model, opt, x, y, steps, units_per_step):
    """In a torch worker: times `steps` training steps (loss = model(x, y), backward, opt.step()) and prints
    their rate in units (images, tokens) per second, as print_worker_rate."""
    rates = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rates.append(units_per_step / (time.perf_counter() - t0))
    print_worker_rate(rates)


def compare(name, unit, rounds, troupe_side, worker_args, shape, script, setup_torch2=False):
    """Alternates troupe_side() -> (rate, loss, flops) and each PyTorch's worker, `rounds` times; prints and returns the
    result (see the module's docstring). `shape` goes into the JSON line as it is."""
    found = peers(setup_torch2=setup_torch2)
    ours, theirs = [], {label: [] for label, _ in found}
    flops = None  # (model FLOPs per unit, peak FLOP/s): the same model on the same CPU for every side

    def mfu(rate):
        return f" MFU {100.0 * rate * flops[0] / flops[1]:5.1f}%" if flops else ""

    for r in range(rounds):
        rate, loss, flops = troupe_side()
        ours.append(rate)
        print(f"round {r}: troupe             {rate:10.0f} {unit}{mfu(rate)} (loss after the run {loss:.4f})", flush=True)
        for label, python in found:
            theirs[label].append(torch_rate(python, script, worker_args))
            print(f"round {r}: {label:<18} {theirs[label][-1]:10.0f} {unit}{mfu(theirs[label][-1])}", flush=True)
    result = {"bench": name, **shape, "unit": unit, "troupe": round(statistics.median(ours))}
    if flops:
        result["flops_per_unit"] = flops[0]
        result["peak_flops_per_s"] = flops[1]
        result["troupe_mfu"] = round(statistics.median(ours) * flops[0] / flops[1], 4)
    if not found:
        print(f"{name}: no PyTorch found (Debian's python3-torch, or scripts/setup-torch2); troupe only")
        print(json.dumps(result))
        return result
    medians = {label: statistics.median(rates) for label, rates in theirs.items()}
    faster = max(medians, key=medians.get)
    result["peers"] = {label: round(v) for label, v in medians.items()}
    result["ratios"] = {label: round(statistics.median(ours) / v, 3) for label, v in medians.items()}
    result["faster_peer"] = faster
    result["ratio"] = result["ratios"][faster]
    print(f"median of {rounds} rounds: troupe {result['troupe']} {unit}; " +
          "; ".join(f"{label} {result['peers'][label]} ({result['ratios'][label]:.2f}x)" for label in medians) +
          f"; troupe / the faster PyTorch ({faster}) = {result['ratio']:.2f}x", flush=True)
    print(json.dumps(result))
    return result
