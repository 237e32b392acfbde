#!/usr/bin/env python3
"""Run the shell blocks of README.md and docs/tour.md exactly as a reader would.

Every ```sh block must be preceded (on the line before the fence) by a marker:

  <!-- readme-test: run -->                  run it, in order, in one bash session
                                             (`set -euo pipefail`, from the repo root);
  <!-- readme-test: background until=CMD --> start it in the background, then wait
                                             until CMD succeeds (120 s at most); it is
                                             stopped when the file's blocks are done;
  <!-- readme-test: skip REASON -->          not run here (needs a cluster, a registry,
                                             or is the test command itself): say why.

A block without a marker fails the check, so a new command cannot be added untested.

One substitution, printed when made: `cargo run --release` runs as `cargo run` (the
debug build the test command has just made). The release profile builds with fat LTO
for several minutes; cargo picks the binary to run the same way in both profiles,
which is what broke once ("could not determine which binary to run").

Usage: scripts/readme-commands.py [--list] [FILE...]
"""

import os
import re
import subprocess
import sys
import tempfile

FILES = ["README.md", "docs/tour.md"]
FENCE = re.compile(r"^```(sh|bash|shell|console)\s*$")
MARKER = re.compile(r"^<!-- readme-test: (run|background|skip)\b\s*(.*?)\s*-->\s*$")


def blocks(path):
    """(line number, kind, argument, text) of each shell block of `path`."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, problems = [], []
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            text = "\n".join(lines[i + 1 : j])
            marker = MARKER.match(lines[start - 1]) if start > 0 else None
            if not marker:
                problems.append(
                    f"{path}:{start + 1}: a shell block without a `<!-- readme-test: run|background|skip ... -->` marker on the line before"
                )
            elif marker.group(1) == "skip" and not marker.group(2):
                problems.append(f"{path}:{start + 1}: `skip` needs a reason")
            elif marker.group(1) == "background" and not marker.group(2).startswith("until="):
                problems.append(f"{path}:{start + 1}: `background` needs until=CMD")
            else:
                out.append((start + 1, marker.group(1), marker.group(2), text))
            i = j + 1
        else:
            i += 1
    return out, problems


def script(path, found):
    """One bash script running the blocks of `path` in order."""
    parts = [
        # -m: each background block is a process group of its own, stopped whole
        # (`cargo run` and the program it started).
        "set -euo pipefail -m",
        "bg=()",
        'stop_bg() { for p in "${bg[@]}"; do kill -- "-$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }',
        "trap stop_bg EXIT",
    ]
    for line, kind, arg, text in found:
        if kind == "skip":
            continue
        if "cargo run --release" in text:
            print(f"{path}:{line}: running `cargo run --release` as `cargo run` (debug build)")
            text = text.replace("cargo run --release", "cargo run")
        parts.append(f"echo '== {path}:{line}' >&2")
        if kind == "run":
            parts.append(text)
        else:
            until = arg[len("until="):]
            parts.append(f"( {text}\n) >&2 &\nbg+=($!)")
            parts.append(
                f"for _ in $(seq 240); do if {until} >/dev/null 2>&1; then break; fi; "
                f'if ! kill -0 "${{bg[-1]}}" 2>/dev/null; then echo "{path}:{line}: exited before it was ready" >&2; exit 1; fi; sleep 0.5; done\n'
                f"{until} >/dev/null"
            )
    return "\n".join(parts) + "\n"


def main(argv):
    listing = "--list" in argv
    files = [a for a in argv if not a.startswith("--")] or FILES
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    all_problems, plans = [], []
    for path in files:
        found, problems = blocks(path)
        all_problems += problems
        plans.append((path, found))
    if all_problems:
        print("\n".join(all_problems), file=sys.stderr)
        return 1
    for path, found in plans:
        if listing:
            for line, kind, arg, _ in found:
                print(f"{path}:{line}: {kind} {arg}")
            continue
        ran = [b for b in found if b[1] != "skip"]
        print(f"== {path}: {len(ran)} blocks to run, {len(found) - len(ran)} skipped")
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
            f.write(script(path, found))
            name = f.name
        try:
            result = subprocess.run(["bash", name], cwd=root)
        finally:
            os.unlink(name)
        if result.returncode != 0:
            print(f"{path}: a block failed (exit {result.returncode})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
