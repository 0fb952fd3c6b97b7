#!/usr/bin/env python3
"""Every shell command in README.md and docs/*.md runs as written.

Extracts the commands of the fenced code blocks marked sh, bash, shell or console (in console blocks,
the lines after "$ "), joins backslash continuations, drops comments, and runs each with bash from a
scratch copy of the repository's layout (symbolic links to the source's top-level entries, with build/
the build tree), so that what a command writes (runs/, a loss file) lands in the scratch, not the source.

Commands that train get a short step count appended (the last of a repeated option wins):
  troupe train ..., scripts/train ...      --steps 3
  examples/troupe_wide_deep ...            --steps 40
A command that must not run in tests (a long benchmark, the test suite itself) is marked in the
markdown, with its reason, either for a whole block by an HTML comment just before the fence:
  <!-- not run in tests: compares against PyTorch for minutes -->
or for one line by a trailing shell comment:
  scripts/test   # (ii) ... (not run in tests: it is the test suite)
The test lists what it ran and what it skipped, and fails on the first command that fails (exit status
not 0), naming the file and line.
Usage: doc_commands.py SOURCE_DIR BUILD_DIR [--list]"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGS = {"sh", "bash", "shell", "console"}
BLOCK_SKIP = re.compile(r"<!--\s*not run in tests:\s*(.*?)\s*-->")
LINE_SKIP = re.compile(r"not run in tests:\s*([^)]*)")
SHORT_STEPS = [(re.compile(r"(^|[\s/])troupe train\b|(^|[\s/])scripts/train\b"), " --steps 3"),
               (re.compile(r"(^|[\s/])examples/troupe_wide_deep\b"), " --steps 40")]
TIMEOUT_S = 600


def strip_comment(line):
    """The line without a trailing # comment (a # inside quotes is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:]
    return line.rstrip(), ""


def extract(path):
    """[(line number, command, skip reason or None)] of one markdown file."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i, pending_skip = [], 0, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        skip_marker = BLOCK_SKIP.search(lines[i])
        if skip_marker:
            pending_skip = skip_marker.group(1)
        elif lines[i].strip() and not m:
            pending_skip = None
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        block_skip, pending_skip = pending_skip, None
        i += 1
        body_start = i
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        if lang in SHELL_LANGS:
            j = body_start
            while j < i:
                number, raw = j + 1, lines[j]
                if lang == "console":
                    if not raw.lstrip().startswith("$ "):
                        j += 1
                        continue
                    raw = raw.lstrip()[2:]
                while raw.rstrip().endswith("\\") and j + 1 < i:
                    j += 1
                    raw = raw.rstrip()[:-1] + " " + lines[j].strip()
                command, comment = strip_comment(raw.strip())
                j += 1
                if not command:
                    continue
                reason = block_skip
                line_marker = LINE_SKIP.search(comment)
                if line_marker:
                    reason = line_marker.group(1).strip()
                out.append((number, command, reason))
        i += 1
    return out


def scratch_layout(source, build):
    root = tempfile.mkdtemp(prefix="troupe_doc_commands_")
    for entry in os.listdir(source):
        if entry in ("build", "runs", ".git"):
            continue
        os.symlink(os.path.join(source, entry), os.path.join(root, entry))
    os.symlink(os.path.abspath(build), os.path.join(root, "build"))
    return root


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    source, build = os.path.abspath(args[0]), os.path.abspath(args[1])
    files = [os.path.join(source, "README.md")] + sorted(glob.glob(os.path.join(source, "docs", "*.md")))
    commands = []
    for f in files:
        if os.path.exists(f):
            commands += [(os.path.relpath(f, source), n, c, r) for n, c, r in extract(f)]
    if not commands:
        sys.exit("doc_commands: FAIL: no shell commands found in README.md or docs/*.md")
    skipped = [c for c in commands if c[3]]
    to_run = [c for c in commands if not c[3]]
    print(f"doc_commands: {len(commands)} commands in {len(files)} files; skipped {len(skipped)} (marked):")
    for f, n, c, r in skipped:
        print(f"  skip {f}:{n}: {c}\n       reason: {r}")
    if "--list" in sys.argv:
        for f, n, c, _ in to_run:
            print(f"  run  {f}:{n}: {c}")
        return
    root = scratch_layout(source, build)
    env = dict(os.environ, TERM="dumb")
    failed = 0
    try:
        for f, n, command, _ in to_run:
            run = command
            for pattern, extra in SHORT_STEPS:
                if pattern.search(command):
                    run = command + extra
                    break
            start = time.monotonic()
            try:
                r = subprocess.run(["bash", "-c", "set -eo pipefail\n" + run], cwd=root, env=env, capture_output=True,
                                   text=True, errors="replace", stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
                code, out = r.returncode, r.stdout + r.stderr
            except subprocess.TimeoutExpired as e:
                code, out = "timeout", str(e.stdout or "") + str(e.stderr or "")
            took = time.monotonic() - start
            shown = run if run == command else f"{command}   [ran with:{run[len(command):]}]"
            print(f"  {'ok  ' if code == 0 else 'FAIL'} {f}:{n} ({took:.1f}s): {shown}")
            if code != 0:
                failed += 1
                tail = "\n".join(out.strip().split("\n")[-15:])
                print(f"       exit {code}; last lines:\n" + "\n".join("       | " + l for l in tail.split("\n")))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"doc_commands: FAIL: {failed} of {len(to_run)} commands failed as written (fix the command, or mark it "
              "'not run in tests: reason' if it must not run in CI)")
        sys.exit(1)
    print(f"doc_commands: PASS: {len(to_run)} commands ran as written")


if __name__ == "__main__":
    main()
