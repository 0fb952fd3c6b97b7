#!/usr/bin/env python3
"""`troupe train` as two processes (torchrun's variables, loopback) whose one link passes through a forwarding
proxy, with comm.integrity = on (loopback links are otherwise left unprotected); net/tcp/link_security.h.

usage: tampered_link.py TROUPE CASE
  clean    the proxy forwards every byte: losses and final weights equal the single-process run's, bit for bit
  encrypt  the same with comm.encrypt = true: bitwise equal too
  flip     the proxy flips one bit of a data frame from rank 1 mid-training: both processes exit non-zero within
           seconds (comm.timeout_s is 60), and rank 0's error names rank 1 and says the link failed its integrity check
  length   the proxy makes a data frame's length (its last segment's entry in the segment table) 8 MB longer: the
           header's tag catches it before rank 0 waits for those bytes, so the job fails within seconds of it, not
           after comm.timeout_s (60), and rank 0's error names rank 1's link and its header's tag
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchrun_ranks  # noqa: E402

SMALL = ["--steps", "4", "--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.block_size=16", "--set", "train.batch_size=8", "--set", "train.eval_every=0",
         "--set", "train.eval_batches=1", "--set", "data.order=sequential", "--set", "train.deterministic=true",
         "--set", "train.threads=1"]
FLIPPED_FRAME = 3  # data frames from rank 1 after its hello, counted from 0
WORK = None


def fail(msg):
    torchrun_ranks.fail(msg, WORK)


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def read_frame(sock, sealed):
    """One frame of net/wire/frame_codec.h (preamble, segment table, segments); if sealed, with its 8-byte header
    tag after the segment table and its 16-byte seal at the end (net/tcp/link_security.h)."""
    head = read_exact(sock, 16)
    if head is None:
        return None
    magic, _, count_minus_1, first = struct.unpack("<IIII", head)
    count = count_minus_1 + 1
    table = (4 * (count + 1) + 7) // 8 * 8
    rest = read_exact(sock, table - 8) if table > 8 else b""
    if rest is None:
        return None
    sizes = [first] + list(struct.unpack("<%dI" % (count - 1), rest[:4 * (count - 1)]))
    body = read_exact(sock, (8 if sealed else 0) + 8 * sum(sizes) + (16 if sealed else 0))
    return None if body is None else head + rest + body


def lengthen(frame):
    """The frame with its last segment's length in the segment table 1,000,000 words (8 MB) longer: more than the
    rest of the job sends, less than any limit of the decoder."""
    frame = bytearray(frame)
    count = struct.unpack_from("<I", frame, 8)[0] + 1
    at = 12 + 4 * (count - 1)
    struct.pack_into("<I", frame, at, struct.unpack_from("<I", frame, at)[0] + 1000000)
    return bytes(frame)


class Proxy:
    """Forwards one connection on 127.0.0.1 to `to_port`; optionally tampers with data frame `at` from the connector:
    `how` is "flip" (one bit of its body) or "length" (its length, see lengthen)."""

    def __init__(self, to_port, at=None, how="flip"):
        self.to_port, self.at, self.how = to_port, at, how
        self.tampered_at = None
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.flipped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        conn, _ = self.listener.accept()
        deadline = time.monotonic() + 60
        while True:  # rank 0 may not listen yet: retry, as a rank connecting directly would
            try:
                upstream = socket.create_connection(("127.0.0.1", self.to_port))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    conn.close()
                    return
                time.sleep(0.01)

        def back():
            try:
                while True:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        index = -1  # the hello, unsealed
        try:
            while True:
                frame = read_frame(conn, index >= 0)
                if frame is None:
                    break
                if index == self.at:
                    if self.how == "length":
                        frame = lengthen(frame)
                    else:
                        frame = bytearray(frame)
                        frame[len(frame) // 2] ^= 0x01
                    self.flipped = True
                    self.tampered_at = time.monotonic()
                upstream.sendall(bytes(frame))
                index += 1
        except OSError:
            pass
        try:
            upstream.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    global WORK
    troupe, case = os.path.abspath(sys.argv[1]), sys.argv[2]
    WORK = tempfile.mkdtemp(prefix="troupe-tampered-link-")
    single = os.path.join(WORK, "single")
    os.mkdir(single)
    out = lambda d: ["--dump-losses", os.path.join(d, "losses.jsonl"), "--save", os.path.join(d, "w.st")]
    tampering = case in ("flip", "length")
    if not tampering:
        s = subprocess.run([troupe, "train"] + SMALL + out(single), cwd=single, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if s.returncode != 0:
            fail("the single-process run failed: " + s.stderr)

    port = free_port()
    proxy = Proxy(port, FLIPPED_FRAME if tampering else None, case)
    # comm.same_host = tcp: both ranks share this host, and shared memory would carry their gradients around
    # the proxy.
    extra = ["--set", "comm.interface=lo", "--set", "comm.integrity=on", "--set", "comm.same_host=tcp"]
    if case == "encrypt":
        extra += ["--set", "comm.encrypt=true"]
    procs = []
    start = time.monotonic()
    for r in range(2):
        args = [troupe, "train"] + SMALL + extra + (out(WORK) if r == 0 else [])
        procs.append(torchrun_ranks.start_rank(args, WORK, r, 2, "127.0.0.1", port if r == 0 else proxy.port,
                                              "tampered-link-test-secret"))
    try:
        codes = [p.wait(timeout=120) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        fail("the job did not end within 120 s")
    ended = time.monotonic()
    took = ended - start
    err0 = open(os.path.join(WORK, "err0.txt")).read()

    if case == "length":
        if proxy.tampered_at is None:
            fail("the job ended before data frame %d crossed the proxy" % FLIPPED_FRAME)
        if 0 in codes:
            fail("exit codes %s: a frame with a changed length must fail the job" % codes)
        if "the link to rank 1" not in err0 or "failed its integrity check" not in err0 or \
                "header's tag does not match" not in err0:
            fail("rank 0 did not name rank 1's link and the failed tag of the frame's header")
        after = ended - proxy.tampered_at
        if after > 10:
            fail("the job ended %.0f s after the length was changed (comm.timeout_s is 60): not at once" % after)
        line = next(l for l in err0.splitlines() if "integrity check" in l)
        print("a lengthened frame %d: both processes ended %.1f s after it (comm.timeout_s 60), exit codes %s: %s"
              % (FLIPPED_FRAME, after, codes, line.strip()))
    elif case == "flip":
        if not proxy.flipped:
            fail("the job ended before data frame %d crossed the proxy" % FLIPPED_FRAME)
        if 0 in codes:
            fail("exit codes %s: a tampered link must fail the job" % codes)
        if "the link to rank 1" not in err0 or "failed its integrity check" not in err0:
            fail("rank 0 did not name rank 1's link and its failed integrity check")
        if took > 30:
            fail("the job took %.0f s to fail (comm.timeout_s is 60): not at once" % took)
        line = next(l for l in err0.splitlines() if "integrity check" in l)
        print("a flipped bit in frame %d: job failed in %.1f s, exit codes %s: %s" % (FLIPPED_FRAME, took, codes, line.strip()))
    else:
        if codes != [0, 0]:
            fail("exit codes %s" % codes)
        level = "encrypt" if case == "encrypt" else "integrity"
        if "link protection: %s (rank 1)" % level not in open(os.path.join(WORK, "out0.txt")).read():
            fail("rank 0 did not report its link to rank 1 as %s" % level)
        for name in ("losses.jsonl", "w.st"):
            strip = (lambda b: b) if name == "w.st" else (lambda b: [l.split(b'"tokens_per_s"')[0] for l in b.splitlines()])
            a = open(os.path.join(single, name), "rb").read()
            b = open(os.path.join(WORK, name), "rb").read()
            if strip(a) != strip(b):
                fail("%s differs from the single-process run's" % name)
        print("2 processes, their link through a proxy with %s on: bitwise equal to one process" % level)
    shutil.rmtree(WORK, ignore_errors=True)


main()
