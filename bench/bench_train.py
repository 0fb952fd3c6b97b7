#!/usr/bin/env python3
"""Single-device GPT training throughput: troupe beside PyTorch, same shapes, same run, one ratio.

Shapes (the peer's, ../shared/baselines/train_gpt.py): vocab 256, n_embd 256, 4 layers, 4 heads,
block 128, batch 16, AdamW lr 1e-3 betas (0.9, 0.95) weight decay 0.1. Both sides use --threads
threads (default: every core of this machine) and run alternately, --rounds times, so load from the
rest of the machine falls on both; each side's figure is its median step rate over steps after the
warm-up. Prints a final JSON line with both figures and the ratio troupe / PyTorch.

MFU (docs/mfu.md): both sides do the same model FLOPs per token (troupe's count, 6N + 12LCT, read from
its end-of-run line), divided by this CPU's measured peak on the same threads (`troupe peak`): the f32 FMA
peak for f32 runs, the vdpbf16ps peak for bf16 runs (--precision f32,bf16). With bf16, PyTorch's
torch.autocast peer (bench/torch_gpt_autocast.py) runs too.

Run: python3 bench/bench_train.py [--threads N] [--steps 60] [--rounds 2] [--precision f32,bf16]
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
    """Median tokens/s after the warm-up, the last loss, and the FLOPs per token troupe counts."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump,
               "--set", f"train.threads={threads}", "--set", "model.n_layer=4", "--set", "model.n_head=4",
               "--set", "model.n_embd=256", "--set", "model.block_size=128", "--set", "train.batch_size=16",
               "--set", "optim.kind=adamw", "--set", "optim.lr=1e-3", "--set", "optim.beta2=0.95",
               "--set", "optim.weight_decay=0.1", "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]
        for kv in extra:
            cmd += ["--set", kv]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows = [json.loads(line) for line in open(dump)]
    m = re.search(r"\(([0-9.e+]+) FLOP per token", out)
    flops_per_token = float(m.group(1)) if m else 0.0
    rates = [r["tokens_per_s"] for r in rows[WARMUP:]] or [r["tokens_per_s"] for r in rows]
    return statistics.median(rates), rows[-1]["loss"], flops_per_token


def cpu_peak(binary, threads):
    """{"f32": FLOP/s, "bf16": FLOP/s, "sgemm": ..., "bf16_product": ...} from `troupe peak` (0 where n/a)."""
    out = subprocess.run([binary, "peak", "--threads", str(threads)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    peak = {}
    for key, label in (("f32", "f32 FMA loop"), ("bf16", "bf16 dot loop"), ("sgemm", "sgemm"),
                       ("bf16_product", "bf16 product")):
        m = re.search(rf"^{label}\s+([0-9.]+) GFLOP/s", out, re.M)
        peak[key] = float(m.group(1)) * 1e9 if m else 0.0
    if not peak["bf16"]:
        peak["bf16"] = peak["f32"]  # no AVX512-BF16: bf16 runs on the f32 units
    return peak


def torch_rate(baseline, threads, steps):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(["/usr/bin/python3", baseline, "--threads", str(threads), "--steps", str(steps), "--runs", "1"],
                         check=True, capture_output=True, text=True, env=env, cwd=os.path.dirname(baseline)).stdout
    m = re.search(r"RESULT gpt_single_t\d+ tokens_per_s median=(\d+)", out)
    if not m:
        sys.exit("bench_train: could not read the PyTorch baseline's RESULT line:\n" + out)
    return float(m.group(1))


def mfu_text(rate, flops_per_token, peak):
    return f"MFU {100.0 * rate * flops_per_token / peak:5.1f}%" if peak and flops_per_token else "MFU n/a"


def autocast_rate(threads, steps):
    """PyTorch's bf16 autocast peer (bench/torch_gpt_autocast.py), tokens/s."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "torch_gpt_autocast.py"), "--threads",
                          str(threads), "--steps", str(steps)], check=True, capture_output=True, text=True, env=env).stdout
    m = re.search(r"RESULT gpt_autocast_t\d+ tokens_per_s median=(\d+)", out)
    if not m:
        sys.exit("bench_train: could not read torch_gpt_autocast.py's RESULT line:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precision", default="f32", help="troupe's train.precision values to run, comma-separated")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "..", "shared", "baselines", "train_gpt.py"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_train: {a.troupe} not found; build first (scripts/build)")
    precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    if not precisions or any(p not in ("f32", "bf16") for p in precisions):
        sys.exit(f"bench_train: --precision {a.precision}: expected f32, bf16 or f32,bf16")
    have_torch = os.path.exists(a.baseline) and subprocess.run(
        ["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    peak = cpu_peak(a.troupe, a.threads)
    print(f"peak on {a.threads} threads (troupe peak): f32 {peak['f32'] / 1e9:.1f} GFLOP/s, bf16 "
          f"{peak['bf16'] / 1e9:.1f} GFLOP/s; sgemm reached {peak['sgemm'] / 1e9:.1f}, troupe's bf16 product "
          f"{peak['bf16_product'] / 1e9:.1f}", flush=True)
    ours = {p: [] for p in precisions}
    theirs, theirs_bf16 = [], []
    flops_per_token = 0.0
    for r in range(a.rounds):
        for p in precisions:
            rate, loss, fpt = troupe_rate(a.troupe, a.threads, a.steps, [f"train.precision={p}"])
            flops_per_token = fpt or flops_per_token
            ours[p].append(rate)
            print(f"round {r}: troupe {p:4s} {rate:8.0f} tokens/s {mfu_text(rate, fpt, peak[p])} "
                  f"(loss after {a.steps} steps {loss:.4f})", flush=True)
        if have_torch:
            theirs.append(torch_rate(a.baseline, a.threads, a.steps))
            print(f"round {r}: pytorch f32  {theirs[-1]:8.0f} tokens/s {mfu_text(theirs[-1], flops_per_token, peak['f32'])}",
                  flush=True)
            if "bf16" in precisions:
                theirs_bf16.append(autocast_rate(a.threads, a.steps))
                print(f"round {r}: pytorch bf16 {theirs_bf16[-1]:8.0f} tokens/s (torch.autocast) "
                      f"{mfu_text(theirs_bf16[-1], flops_per_token, peak['bf16'])}", flush=True)
    result = {"bench": "train_gpt", "threads": a.threads, "flops_per_token": flops_per_token,
              "peak_f32_flops": peak["f32"], "peak_bf16_flops": peak["bf16"]}
    for p in precisions:
        rate = statistics.median(ours[p])
        key = "troupe" if p == "f32" else f"troupe_{p}"
        result[f"{key}_tokens_per_s"] = round(rate)
        result[f"{key}_mfu"] = round(rate * flops_per_token / peak[p], 4) if peak[p] else None
    if theirs:
        theirs_rate = statistics.median(theirs)
        result["pytorch_tokens_per_s"] = round(theirs_rate)
        result["pytorch_mfu"] = round(theirs_rate * flops_per_token / peak["f32"], 4) if peak["f32"] else None
        for p in precisions:
            key = "ratio" if p == "f32" else f"ratio_{p}"
            result[key] = round(statistics.median(ours[p]) / theirs_rate, 3)
        if theirs_bf16:
            result["pytorch_autocast_bf16_tokens_per_s"] = round(statistics.median(theirs_bf16))
            result["ratio_bf16_vs_autocast"] = round(statistics.median(ours["bf16"]) / statistics.median(theirs_bf16), 3)
    else:
        print("bench_train: PyTorch baseline not available (/usr/bin/python3 with torch, ../shared/baselines); troupe only")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
