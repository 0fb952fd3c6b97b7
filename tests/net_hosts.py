#!/usr/bin/env python3
"""`troupe train` across test hosts: network namespaces on a bridge (scripts/test-hosts), one rank per host,
started the ways a user starts them (docs/multi-host.md); each run must end bitwise equal to one device.

usage: net_hosts.py TROUPE CASE
  env        3 hosts, ranks started with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
             and comm.interface = eth0, host 2's link shaped to 200 Mbit/s (tc tbf): losses and final
             weights equal the single-process run's, bit for bit; comm.integrity = auto protects the
             links between hosts
  mpirun     3 hosts, ranks started by OpenMPI's mpirun (its remote-shell agent runs orted inside the
             namespace of the host it names): bitwise equal too
  link_down  3 hosts; host 2's link goes down mid-training: rank 0 fails within comm.timeout_s, naming
             rank 2 and its host
  host_killed  as link_down, but host 2's troupe process is killed (SIGKILL): rank 0 names it at once
  hier       2 hosts x 2 ranks (torchrun's variables): ranks on one host talk through shared memory, hosts over
             TCP (chosen from the host names the ranks report), gradients summed hierarchically (inside each
             host, across the hosts' leaders, back): bitwise equal too
  slurm      one host (no namespaces): a one-node Slurm cluster (scripts/test-slurm) runs
             `srun -n 3 troupe train ...`: bitwise equal too
Exits 77 (skipped) when not root, without `ip netns`, or without the case's launcher (mpirun; slurm-wlm, munge).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchrun_ranks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = os.path.join(ROOT, "scripts", "test-hosts")
N = 3
SMALL = ["--steps", "4", "--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.block_size=16", "--set", "train.batch_size=9", "--set", "train.eval_every=0",
         "--set", "train.eval_batches=1", "--set", "data.order=sequential", "--set", "train.deterministic=true",
         "--set", "train.threads=1"]
# hier: 4 ranks, so a batch that 4 divides (the single-device run uses the same).
HIER = [a if a != "train.batch_size=9" else "train.batch_size=12" for a in SMALL]
PREFIX = "tr%d-" % os.getpid()  # unique per run, so concurrent runs do not collide
WORK = None


def fail(msg):
    torchrun_ranks.fail(msg, WORK)


def skip(msg):
    print("SKIPPED: " + msg)
    sys.exit(77)


def strip_timing(path):
    with open(path) as f:
        return [line.split('"tokens_per_s"')[0] for line in f]


def same_run(single_dir, work):
    """The joined run's losses and weights are the single-process run's, bit for bit."""
    if strip_timing(os.path.join(single_dir, "losses.jsonl")) != strip_timing(os.path.join(work, "losses.jsonl")):
        fail("the losses differ from the single-process run's")
    with open(os.path.join(single_dir, "w.st"), "rb") as a, open(os.path.join(work, "w.st"), "rb") as b:
        if a.read() != b.read():
            fail("the final weights differ from the single-process run's")


def outputs(work):
    return ["--dump-losses", os.path.join(work, "losses.jsonl"), "--save", os.path.join(work, "w.st")]


def env_ranks(troupe, work, extra, port, hosts=None, small=SMALL):
    """Starts rank r on host hosts[r] (default: host r) with torchrun's variables; returns the processes."""
    hosts = hosts or list(range(N))
    procs = []
    for r, host in enumerate(hosts):
        args = [HOSTS, "run", PREFIX, str(host), troupe, "train"] + small + ["--set", "comm.interface=eth0"] + extra
        if r == 0:
            args += outputs(work)
        procs.append(torchrun_ranks.start_rank(args, work, r, len(hosts), "10.77.0.1", port, "net-hosts-test-secret"))
    return procs


def case_env(troupe, single, work):
    subprocess.run([HOSTS, "shape", PREFIX, "2", "200mbit"], check=True)  # one slower link changes timing, not results
    procs = env_ranks(troupe, work, [], 29500)
    codes = [p.wait(timeout=120) for p in procs]
    if codes != [0] * N:
        fail("exit codes %s" % codes)
    out = open(os.path.join(work, "out0.txt")).read()
    expected = "ranks on 3 hosts: %s0 (rank 0), %s1 (rank 1), %s2 (rank 2)" % (PREFIX, PREFIX, PREFIX)
    if expected not in out:
        fail("rank 0 did not report each rank's host (%r)" % expected)
    # comm.integrity = auto: links between hosts authenticate every frame (net/tcp/link_security.h).
    if "link protection: integrity (ranks 1 2)" not in out:
        fail("rank 0's links to the other hosts are not integrity-protected by default")
    same_run(single, work)
    print("3 hosts by environment variables: bitwise equal to one device, links integrity-protected; " + expected)


def case_hier(troupe, single, work):
    subprocess.run([HOSTS, "shape", PREFIX, "1", "200mbit"], check=True)
    procs = env_ranks(troupe, work, [], 29500, hosts=[0, 0, 1, 1], small=HIER)
    codes = [p.wait(timeout=120) for p in procs]
    if codes != [0] * 4:
        fail("exit codes %s" % codes)
    out = open(os.path.join(work, "out0.txt")).read()
    expected = ["ranks on 2 hosts: %s0 (ranks 0 1), %s1 (ranks 2 3)" % (PREFIX, PREFIX),
                "within a host through shared memory, between hosts over tcp; gradients summed hierarchically "
                "(in each host, across the 2 hosts' leaders, back)"]
    for line in expected:
        if line not in out:
            fail("rank 0 did not report %r" % line)
    same_run(single, work)
    print("2 hosts x 2 ranks, shared memory inside a host, hierarchical allreduce: bitwise equal to one device")


def case_mpirun(troupe, single, work):
    mpirun = shutil.which("mpirun")
    if not mpirun:
        skip("OpenMPI's mpirun is not installed (scripts/setup-deps --tests installs openmpi-bin)")
    # mpirun runs on host 0; for the other hosts its remote-shell agent gets "HOST orted ARGS...", and runs
    # orted in that host's namespace (host names are the namespaces' names).
    agent = os.path.join(work, "ns-agent")
    with open(agent, "w") as f:
        f.write("#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nhost=$1; shift\n"
                "exec ip netns exec \"$host\" unshare --uts sh -c 'hostname \"$0\" && exec sh -c \"$*\"' \"$host\" \"$@\"\n")
    os.chmod(agent, 0o755)
    hosts = ",".join("%s%d" % (PREFIX, r) for r in range(N))
    env = dict(os.environ, TROUPE_SECRET="net-hosts-test-secret", MASTER_ADDR="10.77.0.1", MASTER_PORT="29500",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [HOSTS, "run", PREFIX, "0", mpirun, "-n", str(N), "--host", hosts, "--mca", "plm_rsh_agent", agent,
           "--mca", "oob_tcp_if_include", "10.77.0.0/24", "-x", "TROUPE_SECRET", "-x", "MASTER_ADDR", "-x", "MASTER_PORT",
           troupe, "train"] + SMALL + ["--set", "comm.interface=eth0"] + outputs(work)
    p = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, timeout=180,
                       stdout=open(os.path.join(work, "out0.txt"), "w"), stderr=open(os.path.join(work, "err0.txt"), "w"))
    if p.returncode != 0:
        fail("mpirun exited with %d" % p.returncode)
    out = open(os.path.join(work, "out0.txt")).read()
    if "ranks on 3 hosts" not in out:
        fail("rank 0 did not report 3 hosts")
    same_run(single, work)
    print("3 hosts by mpirun: bitwise equal to one device")


def case_link_down(troupe, single, work, kill=False):
    timeout_s = 4
    procs = env_ranks(troupe, work, ["--steps", "100000", "--set", "comm.timeout_s=%d" % timeout_s], 29500)
    time.sleep(4)  # training by now (the first steps take well under a second)
    if any(p.poll() is not None for p in procs):
        fail("a rank ended before the link went down")
    if kill:
        procs[2].send_signal(signal.SIGKILL)  # the wrappers exec, so this is host 2's troupe process
    else:
        subprocess.run([HOSTS, "link", PREFIX, "2", "down"], check=True)
    down_at = time.time()
    code = procs[0].wait(timeout=60)
    took = time.time() - down_at
    for p in procs[1:]:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    err = open(os.path.join(work, "err0.txt")).read()
    if code == 0:
        fail("rank 0 did not fail")
    if took > timeout_s + 5:
        fail("rank 0 took %.1f s to fail, comm.timeout_s = %d" % (took, timeout_s))
    host = "%s2" % PREFIX
    if "rank 2" not in err or host not in err:
        fail("rank 0's error does not name rank 2 and its host %s" % host)
    print("host 2's %s: rank 0 failed %.1f s later (comm.timeout_s = %d): %s" % ("process killed" if kill else "link down", took, timeout_s,
                                                                 err.strip().splitlines()[0]))


def case_slurm(troupe, single, work):
    slurm = os.path.join(ROOT, "scripts", "test-slurm")
    cluster = os.path.join(work, "slurm")
    os.mkdir(cluster)
    try:
        start = subprocess.run([slurm, "start", cluster], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=60)
        if start.returncode != 0:
            fail("the test cluster did not start: " + start.stdout)
        env = dict(os.environ, TROUPE_SECRET="net-hosts-test-secret", SLURM_CONF=os.path.join(cluster, "slurm.conf"))
        p = subprocess.run(["srun", "-n", str(N), troupe, "train"] + SMALL + outputs(work), cwd=work, env=env,
                           stdin=subprocess.DEVNULL, timeout=180, stdout=open(os.path.join(work, "out0.txt"), "w"),
                           stderr=open(os.path.join(work, "err0.txt"), "w"))
        if p.returncode != 0:
            fail("srun exited with %d" % p.returncode)
    finally:
        subprocess.run([slurm, "stop", cluster])
    out = open(os.path.join(work, "out0.txt")).read()
    if "3 replicas as processes a launcher started" not in out or "ranks on 1 host" not in out:
        fail("rank 0 did not report a joined job of 3 ranks on 1 host")
    same_run(single, work)
    print("srun -n 3 on a one-node Slurm cluster: bitwise equal to one device")


def main():
    troupe, case = os.path.abspath(sys.argv[1]), sys.argv[2]
    tool = os.path.join(ROOT, "scripts", "test-slurm") if case == "slurm" else HOSTS
    check = subprocess.run([tool, "check"], stdout=subprocess.PIPE, text=True)
    if check.returncode != 0:
        skip(check.stdout.strip())
    global WORK
    WORK = tempfile.mkdtemp(prefix="troupe-net-hosts-")
    single = os.path.join(WORK, "single")
    os.mkdir(single)
    if case not in ("link_down", "host_killed"):
        s = subprocess.run([troupe, "train"] + (HIER if case == "hier" else SMALL) + outputs(single), cwd=single, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if s.returncode != 0:
            fail("the single-process run failed: " + s.stderr)
    if case == "slurm":
        case_slurm(troupe, single, WORK)
    else:
        try:
            subprocess.run([HOSTS, "up", PREFIX, str(N)], check=True)
            {"env": case_env, "hier": case_hier, "mpirun": case_mpirun, "link_down": case_link_down,
             "host_killed": lambda *a: case_link_down(*a, kill=True)}[case](troupe, single, WORK)
        finally:
            subprocess.run([HOSTS, "down", PREFIX])
    shutil.rmtree(WORK, ignore_errors=True)


main()
