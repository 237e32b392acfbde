#!/usr/bin/env python3
"""The map of docs/design.md ("The crates"), checked.

1. Each workspace crate depends only on the crates its role allows: the contract on
   none of ours, the runtime on the contract, the webhook and the agent on those two
   and never on each other; the root package (the binaries, tests, benches) on any.
2. Inside each crate, the top-level modules import each other without a circle
   (`crate::a` in a/ naming `crate::b`, and b/ naming `crate::a`, is one).

Exit 1 with each problem on its own line.
"""

import json
import pathlib
import re
import subprocess
import sys

ALLOWED = {
    "secret-injector-contract": set(),
    "secret-injector-runtime": {"secret-injector-contract"},
    "secret-injector-webhook": {"secret-injector-contract", "secret-injector-runtime"},
    "secret-injector-agent": {"secret-injector-contract", "secret-injector-runtime"},
}
ROOT = "secret-injector"


def crate_problems(packages):
    ours = {p["name"] for p in packages}
    problems = []
    if set(ALLOWED) | {ROOT} != ours:
        problems.append(f"the workspace has {sorted(ours)}; the map names {sorted(ALLOWED) + [ROOT]}")
    for p in packages:
        if p["name"] == ROOT:
            continue
        deps = {d["name"] for d in p["dependencies"] if d["name"] in ours}
        for extra in sorted(deps - ALLOWED.get(p["name"], set())):
            problems.append(f"{p['name']} depends on {extra}, which its role may not")
    return problems


def module_of(src: pathlib.Path, file: pathlib.Path):
    rel = file.relative_to(src)
    if rel.parts[0] in ("lib.rs", "main.rs"):
        return None
    return rel.parts[0].removesuffix(".rs")


def cycles(graph):
    """Every circle of the directed graph, each once, as a list of nodes."""
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                circle = path[path.index(nxt):]
                key = frozenset(circle)
                if key not in seen:
                    seen.add(key)
                    found.append(circle + [nxt])
            elif len(path) < 12:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def module_problems(packages):
    problems = []
    for p in packages:
        src = pathlib.Path(p["manifest_path"]).parent / "src"
        graph = {}
        for file in src.rglob("*.rs"):
            here = module_of(src, file)
            if here is None:
                continue
            # Code only: a doc comment's link is not an import.
            code = "\n".join(l.split("//")[0] for l in file.read_text().splitlines())
            for there in set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", code)):
                module = (src / there).is_dir() or (src / f"{there}.rs").exists()
                if there != here and module:
                    graph.setdefault(here, set()).add(there)
        for circle in cycles(graph):
            problems.append(f"{p['name']}: modules import each other in a circle: {' -> '.join(circle)}")
    return problems


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = meta["packages"]
    problems = crate_problems(packages) + module_problems(packages)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{len(packages)} crates, each depending only on what its role allows; no module circle")


if __name__ == "__main__":
    main()
