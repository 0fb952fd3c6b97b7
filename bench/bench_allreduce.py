#!/usr/bin/env python3
"""troupe's allreduce beside torch.distributed (gloo) and OpenMPI, same sizes, same rank counts, same run.

For every rank count (2 and 4 always; more up to the core count with --ranks) and size (16 and 64 MiB):
  troupe-tcp     `troupe bench allreduce --transport tcp`    ranks = processes over loopback
  troupe-shm     `troupe bench allreduce --transport shm`    ranks = processes over shared memory (net/shm)
  troupe-inproc  `troupe bench allreduce --transport inproc` ranks = threads, by reference (LocalGroup)
  troupe-inproc-ring  the same threads, the ring over the in-process Transport (copied messages)
  gloo           /work/shared/baselines/allreduce_torch.py   (torch.distributed, gloo, processes), under each
                 PyTorch bench/torch_peers.py finds (Debian's 1.13; the 2.x of scripts/setup-torch2 when made):
                 per cell the faster one's median is the gloo figure, and the table names it
  mpi-shm        /work/shared/baselines/mpi_allreduce.c       (OpenMPI MPI_Allreduce, shared memory)
  mpi-tcp        the same with --mca btl tcp,self --mca btl_tcp_if_include lo
busBW = 2(n-1)/n * bytes / time (GB/s = 1e9 B/s, nccl-tests) for all; medians over rounds that alternate the sides.
Every round's figures go to stderr as they are measured, and each target line gives the range of the
per-round ratios beside the ratio of medians, so the noise of a shared machine shows.
Prints the table with the ratios troupe-tcp / gloo, troupe-shm / gloo, troupe-shm / mpi-shm and troupe-inproc / mpi-shm
(targets: tcp >= 1.0x gloo; shm >= 2x gloo and >= 1.0x mpi-shm; inproc >= 1.0x mpi-shm). Each measurement waits for an idle machine first (quiet_run.py) and reports foreign load.

Run: python3 bench/bench_allreduce.py [--troupe build/troupe] [--reps 3] [--rounds 3] [--ranks 2,4]
     [--sides tcp,gloo]   only those sides (and only the ratios between them), e.g. to work on the TCP transport
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peers import peers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINES = "/work/shared/baselines"
SYSTEM_PYTHON = "/usr/bin/python3"
SIDES = ["tcp", "shm", "inproc", "inproc-ring", "gloo", "mpi-shm", "mpi-tcp"]


def quiet(cmd, args, env=None):
    """Runs cmd (list) under quiet_run.py when asked; returns (stdout, foreign_frac or None)."""
    full = cmd
    if args.quiet:
        full = [SYSTEM_PYTHON, os.path.join(BASELINES, "quiet_run.py"), "--max-wait", str(args.max_wait), "--"] + cmd
    p = subprocess.run(full, capture_output=True, text=True, env=env, timeout=900)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        if "RESULT" not in out:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
        # The peers' scripts sometimes die at exit after printing every result (seen: SIGTERM).
        print(f"# warning: exit status {p.returncode} after the results of: {' '.join(cmd)}", file=sys.stderr)
    m = re.search(r"foreign_frac=([\d.]+)", out)
    return out, float(m.group(1)) if m else None


def troupe(args, transport, ranks, mib, algo="auto"):
    iters = 10 if mib <= 16 else 5
    bws, foreign = [], []
    for _ in range(args.reps):
        out, f = quiet([args.troupe, "bench", "allreduce", "--ranks", str(ranks), "--bytes", f"{mib}MiB", "--transport",
                        transport, "--iters", str(iters), "--algo", algo], args)
        bws.append(float(re.search(r'"busbw_gbps":([\d.]+)', out).group(1)))
        if f is not None:
            foreign.append(f)
    return statistics.median(bws), max(foreign) if foreign else None


def gloo(args, python, ranks, sizes):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out, f = quiet([python, os.path.join(BASELINES, "allreduce_torch.py"), "--world", str(ranks), "--sizes-mib",
                    ",".join(map(str, sizes)), "--reps", str(args.reps)], args, env)
    res = {}
    for m in re.finditer(r"RESULT gloo_allreduce_w\d+_(\d+)MiB .*?busbw_GBps median=([\d.]+).*?correct=(\w+)", out):
        if m.group(3) != "True":
            sys.exit(f"gloo ({python}) gave a wrong result at {m.group(1)} MiB")
        res[int(m.group(1))] = float(m.group(2))
    if set(res) != set(sizes):
        sys.exit(f"gloo ({python}) printed no result for {sorted(set(sizes) - set(res))} MiB:\n{out[-3000:]}")
    return res, f


def mpi(args, binary, ranks, tcp):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)]
    if tcp:
        cmd += ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]
    env = dict(os.environ, BENCH_TAG="tcp" if tcp else "shm")
    out, f = quiet(cmd + [binary, str(args.reps)], args, env)
    res = {}
    for m in re.finditer(r"RESULT mpi_allreduce_\w+?_w\d+_(\d+)MiB .*?busbw_GBps median=([\d.]+).*?correct=(\w+)", out):
        if m.group(3) != "True":
            sys.exit(f"OpenMPI gave a wrong result at {m.group(1)} MiB")
        res[int(m.group(1))] = float(m.group(2))
    return res, f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--reps", type=int, default=3, help="repetitions per side and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each running every side once")
    ap.add_argument("--ranks", default="", help="rank counts (default: 2, 4 and the core count if larger)")
    ap.add_argument("--sizes-mib", default="16,64")
    ap.add_argument("--no-quiet", dest="quiet", action="store_false", help="do not wait for an idle machine")
    ap.add_argument("--max-wait", type=float, default=60.0, help="quiet_run.py: most seconds to wait for idle")
    ap.add_argument("--sides", default=",".join(SIDES), help="which sides to run (default: all of %(default)s)")
    args = ap.parse_args()
    sides = args.sides.split(",")
    if not set(sides) <= set(SIDES):
        sys.exit(f"--sides: unknown {sorted(set(sides) - set(SIDES))}; choose from {','.join(SIDES)}")
    sizes = [int(s) for s in args.sizes_mib.split(",")]
    ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else sorted({2, 4, os.cpu_count() or 2})
    use_mpi = "mpi-shm" in sides or "mpi-tcp" in sides
    torches = peers() if "gloo" in sides else []  # [(label, python)]
    if "gloo" in sides and not torches:
        sys.exit("gloo: no PyTorch found (Debian's python3-torch, or scripts/setup-torch2)")
    if use_mpi and not shutil.which("mpicc"):
        sys.exit("mpicc not found: apt-get install -y libopenmpi-dev openmpi-bin")

    with tempfile.TemporaryDirectory() as tmp:
        mpi_bin = os.path.join(tmp, "mpi_allreduce")
        if use_mpi:
            subprocess.run(["mpicc", "-O2", os.path.join(BASELINES, "mpi_allreduce.c"), "-o", mpi_bin], check=True)
        # Rounds alternate the sides, so a burst of foreign load hits both; each figure is the median
        # over rounds of each round's median.
        samples = {}  # (side, ranks, mib) -> [busbw per round]
        worst_foreign = 0.0
        for rnd in range(args.rounds):
            for n in ranks:
                measured = []
                peer_bw = {}  # side -> {MiB: busBW} of this round
                for label, python in torches:  # gloo under each PyTorch: one side per interpreter
                    peer_bw[f"gloo {label}"], f = gloo(args, python, n, sizes)
                    measured.append(f)
                if "mpi-shm" in sides:
                    peer_bw["mpi-shm"], f = mpi(args, mpi_bin, n, tcp=False)
                    measured.append(f)
                if "mpi-tcp" in sides:
                    peer_bw["mpi-tcp"], f = mpi(args, mpi_bin, n, tcp=True)
                    measured.append(f)
                for mib in sizes:
                    for side, by_size in peer_bw.items():
                        samples.setdefault((side, n, mib), []).append(by_size[mib])
                    for side, transport, algo in (("tcp", "tcp", "auto"), ("shm", "shm", "auto"), ("inproc", "inproc", "auto"),
                                                  ("inproc-ring", "inproc", "ring")):
                        if side not in sides:
                            continue
                        value, f = troupe(args, transport, n, mib, algo)
                        samples.setdefault((side, n, mib), []).append(value)
                        measured.append(f)
                worst_foreign = max([worst_foreign] + [f for f in measured if f is not None])
                for mib in sizes:
                    figures = "  ".join(f"{side} {samples[(side, n, mib)][-1]:.3f}" for side in
                                        [s for s in SIDES if s != "gloo" and s in sides] + [f"gloo {t}" for t, _ in torches])
                    print(f"# round {rnd + 1}, {n} ranks, {mib} MiB (busBW GB/s): {figures}", file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in samples.items()}
        # gloo's figure per cell: the faster PyTorch's median (its rounds give the per-round ratios).
        gloo_by = {}
        for n in ranks:
            for mib in sizes:
                if torches:
                    label = max((t for t, _ in torches), key=lambda t: med[(f"gloo {t}", n, mib)])
                    gloo_by[(n, mib)] = label
                    med[("gloo", n, mib)] = med[(f"gloo {label}", n, mib)]
                    samples[("gloo", n, mib)] = samples[(f"gloo {label}", n, mib)]

    load = os.getloadavg()
    print(f"# allreduce busBW, GB/s (median over {args.rounds} rounds of medians of {args.reps}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores; worst foreign CPU load during a run: {worst_foreign:.2f}; load average at the end "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    # Columns: each side run, then each ratio whose two sides ran (** for the targets').
    ratios = [("tcp", "gloo", 1.0), ("shm", "gloo", 2.0), ("shm", "mpi-shm", 1.0), ("inproc", "mpi-shm", 1.0),
              ("tcp", "mpi-tcp", None)]
    ratios = [r for r in ratios if r[0] in sides and r[1] in sides]
    names = {"tcp": "troupe-tcp", "shm": "troupe-shm", "inproc": "troupe-inproc"}
    head = (["ranks", "MiB"] + [names.get(s, s) for s in SIDES if s in sides] + (["gloo is"] if torches else []) +
            [f"{a}/{b}" for a, b, _ in ratios])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in ranks:
        for mib in sizes:
            cells = [str(n), str(mib)] + [f"{med[(s, n, mib)]:.2f}" for s in SIDES if s in sides]
            if torches:
                cells.append(gloo_by[(n, mib)])
            for a, b, goal in ratios:
                r = med[(a, n, mib)] / med[(b, n, mib)]
                cells.append(f"**{r:.2f}x**" if goal else f"{r:.2f}x")
            print("| " + " | ".join(cells) + " |")
    for n in ranks:
        for mib in sizes:
            for a, b, goal in ratios:
                if goal is None:
                    continue
                r = med[(a, n, mib)] / med[(b, n, mib)]
                each = [x / y for x, y in zip(samples[(a, n, mib)], samples[(b, n, mib)])]
                vs = f" ({gloo_by[(n, mib)]})" if b == "gloo" else ""
                print(f"target {a} >= {goal:.1f}x {b}{vs}, {n} ranks, {mib} MiB: {r:.2f}x {'met' if r >= goal else 'NOT met'}"
                      f" (per round {min(each):.2f}-{max(each):.2f}x)")


if __name__ == "__main__":
    main()
