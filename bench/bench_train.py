#!/usr/bin/env python3
"""Single-device GPT training throughput: troupe beside every PyTorch configuration, same shapes, same run.

Two shapes (--sizes): "small", the peer's (../shared/baselines/train_gpt.py): vocab 256, width 256, 4 layers,
4 heads, block 128, batch 16; and "large": width 512, 6 layers, 8 heads, block 256, batch 8. AdamW lr 1e-3
betas (0.9, 0.95) weight decay 0.1 everywhere. Every configuration uses --threads threads and they run
alternately, --rounds times, so load from the rest of the machine falls on all; each figure is the median
step rate over the steps after the warm-up, and the median over rounds is reported.

The PyTorch configurations (bench/torch_gpt_peer.py, under each interpreter bench/torch_peers.py finds:
Debian's 1.13 and the 2.x virtual environment, which --setup-torch2 creates):
  f32:  eager with OMP_WAIT_POLICY=PASSIVE (both) and =ACTIVE (2.x); torch.compile (2.x, inductor);
  bf16: torch.autocast(dtype=bfloat16) (only when --precision has bf16).
compile and autocast run with PASSIVE: ACTIVE is faster on a quiet machine (6,964 against 6,365 tokens/s
eager, issue 17) but several times slower on a busy one, where spinning threads take each other's cores.
The ratios compare troupe with the fastest configuration of its precision, which is named.

MFU (docs/mfu.md): both sides do the same model FLOPs per token (troupe's count, 6N + 12LCT, read from
its end-of-run line), divided by this CPU's measured peak on the same threads (`troupe peak`): the f32 FMA
peak for f32 runs, the vdpbf16ps peak for bf16 runs.

Run: python3 bench/bench_train.py [--threads N] [--steps 40] [--steps-large 12] [--warmup 5] [--rounds 2]
                                  [--sizes small,large] [--precision f32,bf16] [--setup-torch2]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peers import peers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5  # steps not timed (--warmup): first touch of memory, and torch.compile's compilation
SIZES = {
    "small": dict(width=256, layers=4, heads=4, block=128, batch=16),
    "large": dict(width=512, layers=6, heads=8, block=256, batch=8),
}


def troupe_rate(binary, threads, steps, extra=(), shape=SIZES["small"], warmup=WARMUP):
    """Median tokens/s after the warm-up, the last loss, and the FLOPs per token troupe counts."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "losses.jsonl")
        cmd = [binary, "train", "--steps", str(steps), "--dump-losses", dump,
               "--set", f"train.threads={threads}", "--set", f"model.n_layer={shape['layers']}",
               "--set", f"model.n_head={shape['heads']}", "--set", f"model.n_embd={shape['width']}",
               "--set", f"model.block_size={shape['block']}", "--set", f"train.batch_size={shape['batch']}",
               "--set", "optim.kind=adamw", "--set", "optim.lr=1e-3", "--set", "optim.beta2=0.95",
               "--set", "optim.weight_decay=0.1", "--set", "train.eval_every=0", "--set", "train.eval_batches=1"]
        for kv in extra:
            cmd += ["--set", kv]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows = [json.loads(line) for line in open(dump)]
    m = re.search(r"\(([0-9.e+]+) FLOP per token", out)
    flops_per_token = float(m.group(1)) if m else 0.0
    rates = [r["tokens_per_s"] for r in rows[warmup:]] or [r["tokens_per_s"] for r in rows]
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


def peer_configs(found, precisions):
    """[(label, precision, python, mode, OMP_WAIT_POLICY)] for every PyTorch found."""
    configs = []
    for label, python in found:
        two = not label.startswith("torch 1.")
        configs.append((f"{label} eager PASSIVE", "f32", python, "eager", "PASSIVE"))
        if two:  # Debian's 1.13 runs with its peer script's policy only (train_gpt.py's, PASSIVE)
            configs.append((f"{label} eager ACTIVE", "f32", python, "eager", "ACTIVE"))
            configs.append((f"{label} compile PASSIVE", "f32", python, "compile", "PASSIVE"))
        if "bf16" in precisions:
            configs.append((f"{label} autocast PASSIVE", "bf16", python, "autocast", "PASSIVE"))
    return configs


def peer_rate(python, mode, policy, threads, steps, shape, warmup=WARMUP):
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    cmd = [python, os.path.join(ROOT, "bench", "torch_gpt_peer.py"), "--threads", str(threads), "--steps", str(steps),
           "--warmup", str(warmup), "--mode", mode, "--width", str(shape["width"]), "--layers", str(shape["layers"]),
           "--heads", str(shape["heads"]), "--block", str(shape["block"]), "--batch", str(shape["batch"])]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"RESULT gpt_peer tokens_per_s median=(\d+)", run.stdout)
    if run.returncode != 0 or not m:
        sys.exit(f"bench_train: {' '.join(cmd)} (OMP_WAIT_POLICY={policy}) failed:\n{run.stdout}\n{run.stderr[-3000:]}")
    return float(m.group(1))


def mfu_of(rate, flops_per_token, peak):
    """Model-FLOP utilisation of `rate` tokens/s against `peak` FLOP/s (None where either count is unknown)."""
    return round(rate * flops_per_token / peak, 4) if peak and flops_per_token else None


def mfu_text(rate, flops_per_token, peak):
    return f"MFU {100.0 * rate * flops_per_token / peak:5.1f}%" if peak and flops_per_token else "MFU n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run at the small size")
    ap.add_argument("--steps-large", type=int, default=12, help="timed steps per run at the large size")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="steps before the timed ones, every run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="small", help="small, large or small,large")
    ap.add_argument("--precision", default="f32", help="troupe's train.precision values to run, comma-separated")
    ap.add_argument("--setup-torch2", action="store_true", help="create the PyTorch 2.x environment if missing")
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    a = ap.parse_args()
    if not os.path.exists(a.troupe):
        sys.exit(f"bench_train: {a.troupe} not found; build first (scripts/build)")
    precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    if not precisions or any(p not in ("f32", "bf16") for p in precisions):
        sys.exit(f"bench_train: --precision {a.precision}: expected f32, bf16 or f32,bf16")
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if not sizes or any(s not in SIZES for s in sizes):
        sys.exit(f"bench_train: --sizes {a.sizes}: expected small, large or small,large")
    configs = peer_configs(peers(setup_torch2=a.setup_torch2), precisions)
    load = os.getloadavg()
    peak = cpu_peak(a.troupe, a.threads)
    print(f"peak on {a.threads} threads (troupe peak): f32 {peak['f32'] / 1e9:.1f} GFLOP/s, bf16 "
          f"{peak['bf16'] / 1e9:.1f} GFLOP/s; sgemm reached {peak['sgemm'] / 1e9:.1f}, troupe's bf16 product "
          f"{peak['bf16_product'] / 1e9:.1f}; load average {load[0]:.1f}", flush=True)
    rates = {(s, name): [] for s in sizes for name in [f"troupe {p}" for p in precisions] + [c[0] for c in configs]}
    fpt = {}
    for r in range(a.rounds):
        for s in sizes:
            shape, steps = SIZES[s], a.warmup + (a.steps if s == "small" else a.steps_large)
            for p in precisions:
                rate, loss, f = troupe_rate(a.troupe, a.threads, steps, [f"train.precision={p}"], shape, a.warmup)
                fpt[s] = f or fpt.get(s, 0.0)
                rates[(s, f"troupe {p}")].append(rate)
                print(f"round {r} {s}: troupe {p:<26s} {rate:8.0f} tokens/s {mfu_text(rate, fpt[s], peak[p])} "
                      f"(loss {loss:.4f})", flush=True)
            for name, p, python, mode, policy in configs:
                rate = peer_rate(python, mode, policy, a.threads, steps - a.warmup, shape, a.warmup)
                rates[(s, name)].append(rate)
                print(f"round {r} {s}: {name:<33s} {rate:8.0f} tokens/s {mfu_text(rate, fpt[s], peak[p])}",
                      flush=True)
    result = {"bench": "train_gpt", "threads": a.threads, "load_average_at_start": round(load[0], 2),
              "peak_f32_flops": peak["f32"], "peak_bf16_flops": peak["bf16"], "sizes": {}}
    for s in sizes:
        med = {name: statistics.median(v) for (size, name), v in rates.items() if size == s}
        out = {"shape": SIZES[s], "flops_per_token": fpt[s], "tokens_per_s": {k: round(v) for k, v in med.items()},
               "mfu": {k: round(v * fpt[s] / peak["bf16" if ("bf16" in k or "autocast" in k) else "f32"], 4)
                       for k, v in med.items()}}
        print(f"{s} {SIZES[s]}: median over {a.rounds} rounds", flush=True)
        for p in precisions:
            ours = med[f"troupe {p}"]
            theirs = {c[0]: med[c[0]] for c in configs if c[1] == p}
            if theirs:
                best = max(theirs, key=theirs.get)
                out[f"best_pytorch_{p}"] = best
                out[f"ratio_{p}"] = round(ours / theirs[best], 3)
                print(f"  troupe {p} {ours:.0f} tokens/s ({mfu_text(ours, fpt[s], peak[p])}) / best PyTorch {p}, "
                      f"{best}, {theirs[best]:.0f} ({mfu_text(theirs[best], fpt[s], peak[p])}) = "
                      f"{ours / theirs[best]:.3f}x", flush=True)
        if "f32" in precisions and "bf16" in precisions:
            out["ratio_bf16_vs_troupe_f32"] = round(med["troupe bf16"] / med["troupe f32"], 3)
            print(f"  troupe bf16 / troupe f32 = {out['ratio_bf16_vs_troupe_f32']:.3f}x", flush=True)
        result["sizes"][s] = out
    if not configs:
        print("bench_train: no PyTorch found (Debian's /usr/bin/python3 with torch, or scripts/setup-torch2); troupe only")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
