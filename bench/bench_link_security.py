#!/usr/bin/env python3
"""What protecting the TCP links' frames costs: `troupe bench allreduce --transport tcp` with --protection off,
integrity (an AES-256-GCM seal per frame) and encrypt (AES-256-GCM encryption too), same sizes, same rank
counts, same run (net/tcp/link_security.h; docs/multi-host.md).

For ranks 2 and 4 and sizes 16 and 64 MiB, every round runs the three levels one after another (so a change
in the machine's load touches all three alike); busBW is the median over the rounds. Prints one table with
each level's ratio to off, and the load average before and after (the machine may be shared).

Run: python3 bench/bench_link_security.py [--troupe build/troupe] [--rounds 3] [--ranks 2,4] [--mib 16,64]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = ["off", "integrity", "encrypt"]


def busbw(args, ranks, mib, level):
    iters = 10 if mib <= 16 else 5
    cmd = [args.troupe, "bench", "allreduce", "--transport", "tcp", "--ranks", str(ranks), "--bytes", f"{mib}MiB",
           "--iters", str(iters), "--protection", level]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return float(re.search(r'"busbw_gbps":([\d.]+)', p.stdout).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--mib", default="16,64")
    args = ap.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    sizes = [int(m) for m in args.mib.split(",")]
    load_before = os.getloadavg()
    results = {}
    for n in ranks:
        for mib in sizes:
            for _ in range(args.rounds):
                for level in LEVELS:
                    results.setdefault((n, mib, level), []).append(busbw(args, n, mib, level))
    load_after = os.getloadavg()
    print(f"troupe bench allreduce --transport tcp --protection LEVEL; busBW GB/s, median of {args.rounds} rounds; "
          f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'ranks':>5} {'MiB':>4} " + " ".join(f"{l:>10}" for l in LEVELS) + "  integrity/off  encrypt/off")
    for n in ranks:
        for mib in sizes:
            med = {l: statistics.median(results[(n, mib, l)]) for l in LEVELS}
            print(f"{n:>5} {mib:>4} " + " ".join(f"{med[l]:>10.3f}" for l in LEVELS) +
                  f"  {med['integrity'] / med['off']:>12.2f}x  {med['encrypt'] / med['off']:>10.2f}x")


main()
