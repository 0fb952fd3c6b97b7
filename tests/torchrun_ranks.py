"""Ranks of `troupe train` started as torchrun starts them, from environment variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), each rank's output in WORK/out<r>.txt and WORK/err<r>.txt; and the failure report
that shows those files. Shared by tests/net_hosts.py and tests/tampered_link.py."""

import os
import subprocess
import sys


def start_rank(args, work, rank, world_size, master_addr, master_port, secret):
    """Starts `args` as rank `rank` of `world_size` (TROUPE_SECRET = secret) in `work`; returns the process."""
    env = dict(os.environ, TROUPE_SECRET=secret, RANK=str(rank), WORLD_SIZE=str(world_size),
               MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
    return subprocess.Popen(args, cwd=work, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(os.path.join(work, "out%d.txt" % rank), "w"),
                            stderr=open(os.path.join(work, "err%d.txt" % rank), "w"))


def fail(msg, work):
    """Prints FAIL: msg (what ctest looks for) and the last 3000 characters of each .txt file in `work` (the
    ranks' output), then exits 1."""
    print("FAIL: " + msg)
    if work:
        for name in sorted(os.listdir(work)):
            if name.endswith(".txt"):
                with open(os.path.join(work, name)) as f:
                    print("--- %s:\n%s" % (name, f.read()[-3000:]))
    sys.exit(1)
