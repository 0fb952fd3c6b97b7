#!/usr/bin/env python3
"""GPT pipeline throughput: troupe's stage actors (2 and 4 stages) against troupe on one device and
against PyTorch's manual 2-process GPipe (../shared/baselines/pipe_manual.py), same shapes, same run.

Shapes as bench_train.py (the peers'): vocab 256, width 256, 4 layers, 4 heads, block 128, batch 16,
AdamW. troupe uses --threads threads in all (default: every core), split evenly over its stages.
Prints one JSON line per configuration and a final line with the ratios.

Run: python3 bench/bench_pipeline_gpt.py [--threads N] [--steps 30]
"""
import argparse
import json
import os
import subprocess

from baseline_result import baseline_result
from bench_train import ROOT, cpu_peak, mfu_of, troupe_rate


def pipe_manual_rate(baseline, micro):
    steps_per_s = baseline_result("bench_pipeline_gpt", "/usr/bin/python3", baseline,
                                  ["--model", "gpt", "--micro", micro, "--reps", 3],
                                  r"RESULT pipe_manual_gpt_micro\d+ steps_per_s median=([0-9.]+)")
    return steps_per_s * 16 * 128  # tokens per step: batch 16 x block 128


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "..", "shared", "baselines", "pipe_manual.py"))
    a = ap.parse_args()
    results = {}
    configs = [("single", []),
               ("pp2_m4", ["parallel.pipeline=2", "parallel.microbatches=4"]),
               ("pp2_m8", ["parallel.pipeline=2", "parallel.microbatches=8"]),
               ("pp4_m8", ["parallel.pipeline=4", "parallel.microbatches=8"]),
               ("pp2_m8_interleaved", ["parallel.pipeline=2", "parallel.microbatches=8",
                                       "parallel.schedule=interleaved", "parallel.virtual_stages=2"])]
    peak = cpu_peak(a.troupe, a.threads)["f32"]
    flops_per_token = 0.0  # as troupe counts them; PyTorch's pipeline runs the same model
    for name, sets in configs:
        rate, loss, flops_per_token = troupe_rate(a.troupe, a.threads, a.steps, sets)
        results[name] = rate
        print(json.dumps({"bench": "pipeline_gpt", "config": name, "tokens_per_s": round(rate),
                          "mfu": mfu_of(rate, flops_per_token, peak), "loss": loss}), flush=True)
    have_torch = os.path.exists(a.baseline) and subprocess.run(
        ["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    if have_torch:
        for micro in (4, 8):
            results[f"torch_pipe_m{micro}"] = pipe_manual_rate(a.baseline, micro)
            print(json.dumps({"bench": "pipeline_gpt", "config": f"torch_pipe_manual_m{micro}",
                              "tokens_per_s": round(results[f"torch_pipe_m{micro}"]),
                              "mfu": mfu_of(results[f"torch_pipe_m{micro}"], flops_per_token, peak)}), flush=True)
    summary = {"bench": "pipeline_gpt_ratios", "threads": a.threads,
               "pp2_m4_vs_single": round(results["pp2_m4"] / results["single"], 3),
               "pp4_m8_vs_single": round(results["pp4_m8"] / results["single"], 3)}
    if have_torch:
        summary["pp2_m4_vs_torch_pipe_m4"] = round(results["pp2_m4"] / results["torch_pipe_m4"], 3)
        summary["pp2_m8_vs_torch_pipe_m8"] = round(results["pp2_m8"] / results["torch_pipe_m8"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
