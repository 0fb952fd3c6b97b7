"""The rank processes of a run as /proc shows them: children of a pid, a child's --rank, liveness.
Shared by tests/orphan_ranks.py, tests/hung_rank.py, tests/replica_restart.py and
tests/tensor_process_restart.py."""

import os


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:  # field 4: ppid
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return found


def rank_of(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        args = f.read().split(b"\0")
    return int(args[args.index(b"--rank") + 1])


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ranks_now(pid):
    """The rank processes pid has now: {rank: pid of its process}."""
    out = {}
    for k in children_of(pid):
        try:
            out[rank_of(k)] = k
        except (OSError, ValueError):
            pass
    return out
