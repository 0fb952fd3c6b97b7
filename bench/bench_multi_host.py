#!/usr/bin/env python3
"""Hierarchical allreduce beside the flat ring across test hosts whose link is shaped to 1 Gbit/s, in one run.

Hosts are network namespaces (scripts/test-hosts): --hosts (2) of them, --per-host (2) ranks on each, ranks
r = h * per_host + i on host h, every host's link shaped to --rate (1gbit) with tc tbf (netem is missing here),
so each direction between hosts carries at most that. Every rank is `troupe bench allreduce --transport hosts`
started with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): shared memory inside a host,
TCP between hosts (net/routed). For each size, rounds alternate the two algorithms on the same hosts:

  ring   the flat ring over all ranks (runtime/comm/ring.h): it crosses between hosts H times, each crossing
         carrying 2(n-1)/n * B per direction
  hier   reduce inside each host, the leaders' ring across hosts, broadcast inside each host
         (runtime/comm/hierarchical.h): 2(H-1)/H * B per leader and direction across hosts

What the link allows: hier cannot beat t_link = 2(H-1)/H * B / rate (the bytes each leader must send over its
link, at the shaped rate, counting frames' headers as payload); the flat ring cannot beat 2(n-1)/n * B / rate.
Printed per size: medians of each, the ratio ring / hier (target >= 1.5; the bound, when both run at the link's
rate, is (2(n-1)/n) / (2(H-1)/H) = 1.5 for 2 x 2), busBW = 2(n-1)/n * B / time (nccl-tests) of both, and
hier's busBW as a share of the busBW at t_link (target >= 0.85). Also the date, the load average and the commands.

--link-trace: where the link idles. During every run a sampler in the bridge's namespace reads each host port's
rx_bytes (what the host's shaped eth0 sent) every 0.5 ms; per size and algorithm it prints, over the timed
iterations (found by bytes: every iteration carries the same), the link's mean use of --rate and the time it spent
idle (1 ms bins under 10% of --rate), of each host's link, median over the rounds. A GSO packet counts one set of
headers there, so a saturated link shows about 95-96%, not 100%. It also prints the bytes each host's shaper counted
(`tc -s qdisc`: Ethernet, IP and TCP headers, ACKs, troupe's frame headers and seals) per byte of the allreduce's
payload over that link: 1 / that is the most of the link any algorithm's payload can have (1448 of 1514 bytes per
full TCP segment at MTU 1500 with timestamps: 95.6%).

--baseline OLD (repeatable): OLD's hier runs in every round too (after this build's), so that old and new are
compared under the same load.

Run (root): python3 bench/bench_multi_host.py [--troupe build/troupe] [--baseline OLD/troupe] [--sizes 16MiB,64MiB]
            [--rounds 3] [--link-trace]
Exits 77 when network namespaces cannot be made here.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = os.path.join(ROOT, "scripts", "test-hosts")


def parse_bytes(text):
    for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * scale
    return int(text)


def parse_rate(text):
    for suffix, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale / 8  # bytes per second
    raise SystemExit("--rate %s: give it as tc does, e.g. 1gbit or 500mbit" % text)


# Runs in the bridge's namespace: samples every host port's rx_bytes until stdin closes, then prints them as JSON.
SAMPLER = r"""
import json, os, sys, threading, time
ports = sys.argv[1:]
files = [open("/sys/class/net/%s/statistics/rx_bytes" % p) for p in ports]
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
rows = []
while not done.is_set():
    row = [time.monotonic()]
    for f in files:
        f.seek(0)
        row.append(int(f.read()))
    rows.append(row)
    time.sleep(0.0005)
json.dump(rows, sys.stdout)
"""


def link_use(rows, iterations, timed, rate):
    """Per host link, over its timed iterations: (mean use of rate, seconds idle in 1 ms bins under 10% of it).

    Each of the run's `iterations` allreduces carries the same bytes over a link, so the timed ones (`timed`, after
    the warm-up, before the checked one) are where its byte count passes from (iterations - 1 - timed) / iterations
    to (iterations - 1) / iterations of its total (the rendezvous' few bytes aside)."""
    out = []
    for port in range(1, len(rows[0])):
        t, b = [r[0] for r in rows], [r[port] - rows[0][port] for r in rows]
        at = lambda share: t[next(i for i in range(len(b)) if b[i] >= share * b[-1])]
        start, end = at((iterations - 1 - timed) / iterations), at((iterations - 1) / iterations)
        sent = [0.0] * max(1, int((end - start) * 1000))  # bytes per 1 ms bin, a sample's bytes spread over its interval
        for i in range(1, len(rows)):
            t0, t1, db = max(t[i - 1], start), min(t[i], end), b[i] - b[i - 1]
            k = int((t0 - start) * 1000)
            while t0 < t1 and k < len(sent):
                edge = min(t1, start + (k + 1) / 1000)
                sent[k] += db * (edge - t0) / (t[i] - t[i - 1])
                t0, k = edge, k + 1
        idle = sum(1 for x in sent if x < 0.1 * rate / 1000) / 1000
        out.append((sum(sent) / (end - start) / rate, idle))
    return out


def tc_sent(prefix, hosts):
    """Bytes each host's shaper (tc tbf on its eth0) has sent so far, headers included, as it counts them."""
    out = []
    for i in range(hosts):
        text = subprocess.run(["ip", "netns", "exec", "%s%d" % (prefix, i), "tc", "-s", "qdisc", "show", "dev", "eth0"],
                              stdout=subprocess.PIPE, text=True, check=True).stdout
        out.append(int(text.split(" Sent ")[1].split()[0]))
    return out


def payload_per_link(args, algo, b):
    """Bytes of allreduce payload one allreduce of b bytes sends over each host's link: hier, a leader's
    2(H-1)/H * b; ring, 2(n-1)/n * b for each rank whose right neighbour is on another host."""
    n, h = args.hosts * args.per_host, args.hosts
    if algo == "hier":
        return [2 * (h - 1) / h * b] * h
    crossing = [sum(1 for r in range(n) if r // args.per_host == i and (r + 1) % n // args.per_host != i) for i in range(h)]
    return [c * 2 * (n - 1) / n * b for c in crossing]


def run_once(args, prefix, algo, size, port, troupe):
    """One allreduce benchmark over every rank; returns rank 0's JSON result (with "links" when --link-trace)."""
    n = args.hosts * args.per_host
    sampler = None
    if args.link_trace:
        sampler = subprocess.Popen(["ip", "netns", "exec", prefix + "sw", sys.executable, "-c", SAMPLER] +
                                   ["p%d" % i for i in range(args.hosts)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        sent_before = tc_sent(prefix, args.hosts)
    procs = []
    for r in range(n):
        env = dict(os.environ, TROUPE_SECRET="bench-multi-host", RANK=str(r), WORLD_SIZE=str(n),
                   MASTER_ADDR="10.77.0.1", MASTER_PORT=str(port))
        cmd = [HOSTS, "run", prefix, str(r // args.per_host), "nice", "-n", "5", troupe, "bench", "allreduce",
               "--transport", "hosts", "--interface", "eth0", "--algo", algo, "--bytes", size, "--iters", str(args.iters),
               "--warmup", str(args.warmup)]
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for r, (p, (out, err)) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            raise SystemExit("rank %d of %s %s failed (%d): %s" % (r, algo, size, p.returncode, err.strip()[-2000:]))
    result = json.loads(outs[0][0].strip().splitlines()[-1])
    if sampler:
        rows = json.loads(sampler.communicate("")[0])
        if args.link_trace_dir:
            with open(os.path.join(args.link_trace_dir, "%s-%s-%d.json" % (algo, size, port)), "w") as f:
                json.dump(rows, f)
        result["links"] = link_use(rows, args.warmup + args.iters + 1, args.iters, parse_rate(args.rate))
        payload = payload_per_link(args, algo, parse_bytes(size))
        result["wire_per_payload"] = [(after - before) / ((args.warmup + args.iters + 1) * p) for before, after, p in
                                      zip(sent_before, tc_sent(prefix, args.hosts), payload)]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--troupe", default=os.path.join(ROOT, "build", "troupe"))
    ap.add_argument("--baseline", action="append", default=[],
                    help="another troupe binary whose hier runs in the same rounds (old vs new); may be repeated")
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--sizes", default="16MiB,64MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--link-trace", action="store_true", help="sample each host link's bytes and print its use and idle time")
    ap.add_argument("--link-trace-dir", help="with --link-trace: also write each run's samples here (ALGO-SIZE-PORT.json)")
    args = ap.parse_args()
    check = subprocess.run([HOSTS, "check"], stdout=subprocess.PIPE, text=True)
    if check.returncode != 0:
        print("SKIPPED: " + check.stdout.strip())
        sys.exit(77)
    args.troupe = os.path.abspath(args.troupe)
    runs = [("ring", "ring", args.troupe), ("hier", "hier", args.troupe)]  # label, --algo, binary
    args.baseline = [os.path.abspath(path) for path in args.baseline]
    for k, path in enumerate(args.baseline):
        runs.append(("hier@baseline%d" % (k + 1), "hier", path))
    prefix = "bm%d-" % os.getpid()
    rate = parse_rate(args.rate)
    n, h = args.hosts * args.per_host, args.hosts
    print("# %s  load average %s  %d hosts x %d ranks, links shaped to %s (tc tbf)  %s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), " ".join("%.2f" % x for x in os.getloadavg()), h,
        args.per_host, args.rate, " ".join(sys.argv)))
    print("# each rank: scripts/test-hosts run %sH %s bench allreduce --transport hosts --interface eth0 --algo ring|hier "
          "--bytes SIZE --iters %d --warmup %d  (RANK, WORLD_SIZE, MASTER_ADDR=10.77.0.1, MASTER_PORT set)" % (
              prefix, args.troupe, args.iters, args.warmup))
    port = 29700
    try:
        subprocess.run([HOSTS, "up", prefix, str(h)], check=True)
        for i in range(h):
            subprocess.run([HOSTS, "shape", prefix, str(i), args.rate], check=True)
        print("%-8s %10s %10s %8s %12s %12s %12s %10s" % ("size", "ring ms", "hier ms", "ring/hier", "ring busBW",
                                                          "hier busBW", "link busBW", "hier/link"))
        for size in args.sizes.split(","):
            b = parse_bytes(size)
            times = {label: [] for label, _, _ in runs}
            links = {label: [] for label, _, _ in runs}
            wire = {label: [] for label, _, _ in runs}  # bytes tc counted per byte of payload, per host link
            for _ in range(args.rounds):
                for label, algo, troupe in runs:
                    port += 1
                    result = run_once(args, prefix, algo, size, port, troupe)
                    times[label].append(result["time_ms"] / 1e3)
                    links[label].append(result.get("links"))
                    wire[label].append(result.get("wire_per_payload"))
            ring, hier = statistics.median(times["ring"]), statistics.median(times["hier"])
            busbw = lambda t: 2 * (n - 1) / n * b / t / 1e9
            t_link = 2 * (h - 1) / h * b / rate
            print("%-8s %10.1f %10.1f %8.2fx %9.3f GB/s %7.3f GB/s %7.3f GB/s %9.0f%%" % (
                size, ring * 1e3, hier * 1e3, ring / hier, busbw(ring), busbw(hier), busbw(t_link), 100 * t_link / hier))
            print("#   every round (ms): %s" % "; ".join("%s %s" % (label, " ".join("%.1f" % (x * 1e3) for x in xs))
                                                     for label, xs in times.items()))
            for k, path in enumerate(args.baseline):
                base = statistics.median(times["hier@baseline%d" % (k + 1)])
                print("#   hier of --baseline %s: %.1f ms, ring/hier %.2fx, hier/link %.0f%%; this build's hier %.3fx as fast" % (
                    path, base * 1e3, ring / base, 100 * t_link / base, base / hier))
            if args.link_trace:
                for algo in times:
                    per_host = ["host %d: %.1f%% of %s, idle %.1f ms, %.4f bytes through tc per payload byte" % (
                        i, 100 * statistics.median(r[i][0] for r in links[algo]), args.rate,
                        1e3 * statistics.median(r[i][1] for r in links[algo]),
                        statistics.median(w[i] for w in wire[algo])) for i in range(h)]
                    print("#   link %s %s over %d timed iterations (median of rounds): %s" % (
                        algo, size, args.iters, "; ".join(per_host)))
            sys.stdout.flush()
        print("# load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    finally:
        subprocess.run([HOSTS, "down", prefix])


main()
