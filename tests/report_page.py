#!/usr/bin/env python3
"""The report page in a real browser: trains two small runs into run directories, writes their report
with `troupe report A B`, opens it in headless Chromium (Debian's `chromium`) and checks that the page
rendered its plots from the runs' data:
  - the DOM after rendering holds one train-loss path per run with one point per metrics row, one
    validation-loss path with one point per evaluation, throughput paths, timeline spans of every
    actor in the trace, and the plan;
  - a screenshot is not blank, and shows the first run's loss colour.
Exit 77 (CTest: skipped) when chromium is not installed (scripts/setup-deps --tests installs it).
Usage: report_page.py TROUPE_BINARY"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

TINY = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set",
        "model.block_size=16", "--set", "train.batch_size=4", "--set", "train.threads=1", "--set",
        "train.eval_batches=1", "--set", "train.eval_every=10"]


def fail(msg):
    print(f"report_page: FAIL: {msg}")
    sys.exit(1)


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of a non-interlaced 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            if depth != 8 or color not in (2, 6):
                fail(f"unexpected PNG format (depth {depth}, colour type {color})")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    troupe = sys.argv[1]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIPPED: chromium is not installed (scripts/setup-deps --tests installs Debian's chromium)")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="troupe_report_")
    try:
        a, b = os.path.join(work, "single"), os.path.join(work, "pipeline")
        for d, extra in ((a, ["--steps", "25"]),
                         (b, ["--steps", "20", "--set", "parallel.pipeline=2", "--set", "parallel.microbatches=4"])):
            r = subprocess.run([troupe, "train", *TINY, *extra, "--run-dir", d], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"troupe train: {r.stdout}{r.stderr}")
        r = subprocess.run([troupe, "report", b, a], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"troupe report: {r.stdout}{r.stderr}")
        page = os.path.join(b, "report.html")
        html = open(page).read()
        if re.search(r"<script|(src|href)\s*=\s*[\"']?https?:|url\(\s*[\"']?https?:|@import", html):
            fail("the page has a script or a network reference")

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={work}/profile"]
        dom = subprocess.run([chromium, *flags, "--dump-dom", "file://" + page], capture_output=True, text=True,
                             timeout=120).stdout
        if "</svg>" not in dom:
            fail(f"chromium rendered no SVG; its DOM begins: {dom[:300]!r}")

        def points(cls):
            found = re.findall(r'<path class="series ' + cls + r'" data-points="(\d+)" d="([^"]*)"', dom)
            for n, d in found:  # the drawn path has as many points as it says
                if d.count("M") + d.count("L") != int(n):
                    fail(f"path {cls}: data-points {n} but d has {d.count('M') + d.count('L')} points")
            return [int(n) for n, _ in found]

        rows = {d: [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))] for d in (a, b)}
        evals = {d: sum(1 for row in rows[d] if "val_loss" in row) for d in (a, b)}
        checks = [("train-loss run-0", [len(rows[b])]), ("train-loss run-1", [len(rows[a])]),
                  ("val-loss run-0", [evals[b]]), ("val-loss run-1", [evals[a]]),
                  ("throughput run-0", [len(rows[b])]), ("throughput run-1", [len(rows[a])])]
        for cls, want in checks:
            got = points(cls)
            if got != want:
                fail(f"path {cls}: {got} points, the metrics have {want}")
            print(f"report_page: {cls}: {got[0]} points, as in the metrics")
        trace = json.load(open(os.path.join(b, "trace.json")))
        tracks = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
        for t in sorted(tracks):
            if f">{t} (" not in dom:
                fail(f"the timeline has no row for track {t!r}")
        spans = len(re.findall(r'<rect class="span (forward|backward|optimizer)"', dom))
        if spans < 2 * 4 * 2:  # 2 stages x 4 micro-batches x forward and backward, at least
            fail(f"the timeline shows {spans} compute spans")
        print(f"report_page: timeline: {len(tracks)} tracks, {spans} compute spans")
        if "ideal bubble of the schedule 20.0%" not in dom or "layers 2-3" not in dom:
            fail("the page lacks the ideal bubble or the plan's partition")

        shot = os.path.join(work, "report.png")
        subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1000,2200", "file://" + page],
                       capture_output=True, timeout=120)
        if not os.path.exists(shot):
            fail("chromium wrote no screenshot")
        width, height, bpp, pixels = png_pixels(shot)
        ink = sum(1 for row in pixels for x in range(0, width * bpp, bpp) if row[x:x + 3] != b"\xff\xff\xff")
        loss_colour = sum(1 for row in pixels for x in range(0, width * bpp, bpp)
                          if abs(row[x] - 0x1f) < 40 and abs(row[x + 1] - 0x77) < 40 and abs(row[x + 2] - 0xb4) < 40)
        print(f"report_page: screenshot {width}x{height}: {ink} non-white pixels, {loss_colour} in the first run's colour")
        if ink < 0.02 * width * height or loss_colour < 200:
            fail("the screenshot is blank or shows no plotted line")
        if os.environ.get("TROUPE_KEEP_REPORT"):  # for a person to look at: copies page and screenshot there
            shutil.copy(shot, os.environ["TROUPE_KEEP_REPORT"] + ".png")
            shutil.copy(page, os.environ["TROUPE_KEEP_REPORT"] + ".html")
        print("report_page: PASS")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
