#!/usr/bin/env bash
# The test command (README): installs what the tests need into ./.venv, then runs
# every check CI runs. Starts from nothing; no servers need to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export VENV="${VENV:-$PWD/.venv}"
req=scripts/requirements-test.txt
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "== installing test tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi
export SECRET_INJECTOR_TEST_VENV="$VENV"

# PostgreSQL from Debian serves Vault's dynamic database credentials in the tests.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  echo "== installing postgresql (Debian)"
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL's server binaries (initdb, postgres, pg_ctl) are missing: install them" \
      "(Debian: apt-get install postgresql) and run this again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# jq: the README's commands pipe the webhook's answers through it.
if ! command -v jq >/dev/null; then
  echo "== installing jq (Debian)"
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "jq is missing: install it (Debian: apt-get install jq) and run this again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== no crate depends on another role's crate"
python3 scripts/crate-roles.py
echo "== cargo test"
cargo test --workspace --locked
# The benches are type-checked by clippy (`--all-targets`) above; `cargo bench` builds
# them optimized when you measure (minutes of release build a correctness run does
# not need, and a debug link of each that proves nothing more).
echo "== manifests, examples and injected workloads"
cargo build --locked
BIN="$PWD/target/debug/secret-injector" scripts/validate-manifests.sh
echo "== links in README.md and docs/, and design.md's source tree"
python3 scripts/check-links.py
echo "== the README's and docs/tour.md's commands, as written"
PATH="$VENV/bin:$PATH" python3 scripts/readme-commands.py
echo "== all tests passed"
