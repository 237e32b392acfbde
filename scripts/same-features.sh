#!/usr/bin/env bash
# Fails when building tests or benches would give a dependency of the binary other
# features than `cargo build` does: the benches would then measure a binary whose
# symbols differ from the release build's, which link-order.txt does not lay out
# (Cargo.toml, the comment above [dev-dependencies]).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for edges in normal,build normal,build,dev; do
  cargo tree --locked -f '{p} {f}' --prefix none -e "$edges" >"$tmp/$edges"
done
python3 - "$tmp/normal,build" "$tmp/normal,build,dev" <<'PY'
import sys
def features(path):
    seen = {}
    for line in open(path):
        parts = line.replace(" (*)", "").split()
        if len(parts) < 2:
            continue
        rest = [p for p in parts[2:] if not p.startswith("(")]
        seen.setdefault(f"{parts[0]} {parts[1]}", set()).update(
            rest[0].split(",") if rest else [])
    return seen
build, dev = features(sys.argv[1]), features(sys.argv[2])
extra = {k: sorted(dev[k] - v) for k, v in build.items() if dev.get(k, v) != v}
for k, f in sorted(extra.items()):
    print(f"{k}: the dev-dependencies add feature(s) {', '.join(f)}; enable them in "
          "Cargo.toml's [dependencies] too", file=sys.stderr)
sys.exit(1 if extra else 0)
PY
