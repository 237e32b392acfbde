#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers with cargo-fuzz (libFuzzer, nightly):
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Default: 60 s for each of reference, annotations, template, admission, config and
# envfile. Needs a nightly toolchain and `cargo install cargo-fuzz`; the test command
# does not. Each corpus starts from the repository's fixtures (examples, workload
# fixtures, reviews, fuzz/seeds) and is kept under fuzz/corpus/ (not committed).
# A crash is saved under fuzz/artifacts/<target>/ and fails the script; keep it as a
# regular regression test once fixed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(reference annotations template admission config envfile)
fi

corpus=fuzz/corpus
mkdir -p "$corpus"
seed() { # seed <target> <name> <content>
  mkdir -p "$corpus/$1"
  printf '%s' "$3" >"$corpus/$1/seed-$2"
}

# Seeds from the fixtures: every reference and annotation in the examples and
# workload fixtures, every template, the sample reviews.
python3 - "$corpus" <<'PY'
import glob, json, os, re, sys
corpus = sys.argv[1]
def put(target, name, content):
    os.makedirs(f"{corpus}/{target}", exist_ok=True)
    with open(f"{corpus}/{target}/seed-{name}", "w") as f:
        f.write(content)
files = sorted(glob.glob("examples/*.yaml") + glob.glob("tests/fixtures/workloads/*.yaml"))
for path in files:
    base = os.path.basename(path)
    lines, refs = [], []
    for m in re.finditer(r"secret-injector\.io/([a-z0-9A-Z_.-]+):\s*(.*)", open(path).read()):
        key, value = m.group(1), m.group(2).strip()
        if value[:1] in "'\"":
            value = value[1:-1]
        lines.append(f"{key}={value}")
        if key.startswith("template-"):
            put("template", f"{base}-{key}", value.replace("\\\\", "\\"))
        for r in re.findall(r"(?:vault|aws|ssm|gcp|azure):[^\s,'\"]+", value):
            refs.append(r)
    put("annotations", base, "\n".join(lines))
    for i, r in enumerate(refs):
        put("reference", f"{base}-{i}", r)
for path in sorted(glob.glob("tests/fixtures/reviews/*.json") + ["docs/admission-review.json"]):
    put("admission", os.path.basename(path), open(path).read())
PY
for f in fuzz/seeds/*/*; do
  t="$(basename "$(dirname "$f")")"
  mkdir -p "$corpus/$t"
  cp "$f" "$corpus/$t/seed-$(basename "$f")"
done
seed template own '{{ .username }}:{{ .password | urlencode }}'
seed template loop '{% for k, v in secrets.db | dictsort %}{{ k }}={{ v | tojson }}{% endfor %}'

report=()
status=0
for t in "${targets[@]}"; do
  log="fuzz/corpus/$t.log"
  echo "== $t: ${secs}s"
  if cargo +nightly fuzz run "$t" "$corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
    tail -40 "$log" >&2
  fi
  runs="$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo ?)"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || echo ?)"
  report+=("$(printf '%-12s %-6s %4ss  %10s execs  %s' "$t" "$result" "$secs" "$runs" "$cov")")
done
echo "== summary"
printf '%s\n' "${report[@]}"
exit "$status"
