#!/usr/bin/env python3
"""CPU time and context switches per allreduce of `troupe bench allreduce`, for A/B runs of transport changes.

busBW on a 2-core machine shared with other builds moves by +-30% from run to run; the CPU time the rank
processes spend per allreduce moves much less, and a change that saves work shows there first. Each sample is
the difference of two runs, --iters 4 and --iters 24, of the same command (start-up, warm-up and checks cancel),
divided by 20; the variants alternate, REPS samples each, and the medians are printed with every sample.
(Softirq work of loopback TCP done while a rank process runs is charged to it, as perf stat charges it.)

gloo the same way: a variant gloo:PYTHON runs ../shared/baselines/allreduce_torch.py under that interpreter with
--reps 1 and --reps 6 (K allreduces a repetition: 10 up to 16 MiB, 4 above), the difference divided by 5 K.

Run: python3 bench/allreduce_cpu.py --ranks 4 --mib 64 --reps 3 main=/tmp/troupe-main new=build/troupe
     a variant is NAME=BINARY [extra bench arguments...], e.g. "s4m=build/troupe --segment-kib 4096",
     or NAME=gloo:PYTHON, e.g. gloo=gloo:/usr/bin/python3
"""
import argparse
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys


GLOO = "/work/shared/baselines/allreduce_torch.py"


def measure(full, env=None):
    """(CPU ms of the children, context switches, stdout) of one run of `full`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(full, capture_output=True, text=True, env=env)
    if p.returncode != 0 and "RESULT" not in p.stdout:  # torch's workers sometimes die at exit after their results
        sys.exit(f"failed ({p.returncode}): {' '.join(full)}\n{p.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e3
    switches = after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw
    return cpu, switches, p.stdout


def per_allreduce(cmd, ranks, mib, transport):
    """(CPU ms, context switches, time ms) per allreduce: the difference of a short and a long run."""
    if cmd[0].startswith("gloo:"):
        k = 10 if mib <= 16 else 4
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        runs = [measure([cmd[0][len("gloo:"):], GLOO, "--world", str(ranks), "--sizes-mib", str(mib), "--reps", str(reps)],
                        env) for reps in (1, 6)]
        ops = 5 * k
        time_ms = float(re.search(r"time_ms median=([\d.]+)", runs[1][2]).group(1))
    else:
        runs = [measure(cmd[:1] + ["bench", "allreduce", "--ranks", str(ranks), "--bytes", f"{mib}MiB", "--transport",
                                   transport, "--iters", str(iters)] + cmd[1:]) for iters in (4, 24)]
        ops = 20
        time_ms = float(re.search(r'"time_ms":([\d.]+)', runs[1][2]).group(1))
    return (runs[1][0] - runs[0][0]) / ops, (runs[1][1] - runs[0][1]) / ops, time_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--transport", default="tcp")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("variants", nargs="+", help="NAME=BINARY [bench arguments]")
    args = ap.parse_args()
    variants = []
    for v in args.variants:
        name, sep, spec = v.partition("=")
        if not sep or not spec.strip():
            sys.exit(f"variant '{v}': write NAME=BINARY [bench arguments], e.g. main=/tmp/troupe-main")
        cmd = shlex.split(spec)
        binary = cmd[0][len("gloo:"):] if cmd[0].startswith("gloo:") else cmd[0]
        if not os.access(binary, os.X_OK):
            sys.exit(f"variant '{name}': {binary} is not an executable troupe binary or python")
        variants.append((name, cmd))
    results = {name: [] for name, _ in variants}
    for _ in range(args.reps):
        for name, cmd in variants:
            results[name].append(per_allreduce(cmd, args.ranks, args.mib, args.transport))
    load = os.getloadavg()
    print(f"# {args.ranks} ranks x {args.mib} MiB over {args.transport}, per allreduce, medians of {args.reps}; "
          f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for name, rows in results.items():
        print(f"{name:12s} CPU {statistics.median(r[0] for r in rows):7.1f} ms {[round(r[0], 1) for r in rows]}  "
              f"context switches {statistics.median(r[1] for r in rows):6.0f}  "
              f"time {statistics.median(r[2] for r in rows):7.1f} ms (the long run's)")


if __name__ == "__main__":
    main()
