#!/usr/bin/env python3
"""Every relative link in the project's Markdown resolves: the file exists and, for
`#anchor`, the target has a heading with that anchor (GitHub's rule: lower case,
punctuation dropped except `-` and `_`, spaces to `-`, repeats numbered `-1`, `-2`).
And docs/design.md's source tree names every file under src/ and crates/*/src/ (so it
cannot go stale).

Usage: scripts/check-links.py [FILE...]   (default: README.md, CHANGELOG.md, docs/*.md)
"""

import glob
import os
import re
import sys

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(text):
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", lambda m: "" if m.group(0) != "_" else "_", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for _, line in prose_lines(path):
            m = HEADING.match(line)
            if not m:
                continue
            s = slug(m.group(2))
            k = seen.get(s, 0)
            found.add(s if k == 0 else f"{s}-{k}")
            seen[s] = k + 1
        cache[path] = found
    return cache[path]


def check(path):
    problems = []
    for n, line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                problems.append(f"{path}:{n}: {target}: no such file {dest}")
                continue
            if anchor and dest.endswith(".md") and anchor not in anchors(dest):
                problems.append(f"{path}:{n}: {target}: {dest} has no heading #{anchor}")
    return problems


def tree_problems():
    """Files under src/ and crates/*/src/ that docs/design.md's tree does not name (by
    file name, or by the directory it shows them in), each looked for in its own
    part of the tree: the lines from `src/` or `crates/<name>/src/` to the next line
    that starts at the margin."""
    text = open("docs/design.md", encoding="utf-8").read()
    start = text.index("**The file tree**")
    tree = text[start : text.index("```", text.index("```", start) + 3)]
    parts, current = {}, None
    for line in tree.splitlines():
        if line and not line[0].isspace():
            current = line.split()[0]
        if current:
            parts.setdefault(current, []).append(line)
    missing = []
    paths = glob.glob("src/**/*.rs", recursive=True)
    paths += glob.glob("crates/*/src/**/*.rs", recursive=True)
    for path in sorted(paths):
        name = os.path.basename(path)
        root = path.split("src/")[0] + "src/"
        rel = os.path.relpath(path, root)
        part = "\n".join(parts.get(root, []))
        if rel not in part and not re.search(rf"(^|[\s,/]){re.escape(name)}\b", part):
            missing.append(f"docs/design.md: the source tree does not name {path} under {root}")
    return missing


def main(argv):
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = argv or ["README.md", "CHANGELOG.md"] + sorted(glob.glob("docs/*.md"))
    problems = [p for f in files for p in check(f)]
    if not argv:
        problems += tree_problems()
    print("\n".join(problems) or f"links: {len(files)} files, all resolve")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
