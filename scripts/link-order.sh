#!/usr/bin/env bash
# Regenerates link-order.txt, the layout of the release binary's code (build.rs passes
# it to LLD; benches/link_order.rs says how it is made). Run it after a toolchain or
# dependency update, or a large change to what a role executes, and commit the file.
# Needs valgrind and binutils (Debian: apt-get install valgrind binutils) and the test
# venv (scripts/test.sh installs it). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in valgrind nm; do
  command -v "$tool" >/dev/null || {
    echo "$tool is missing (Debian: apt-get install valgrind binutils)" >&2
    exit 1
  }
done
export SECRET_INJECTOR_TEST_VENV="${VENV:-$PWD/.venv}"
[[ -x "$SECRET_INJECTOR_TEST_VENV/bin/moto_server" ]] || {
  echo "no test venv at $SECRET_INJECTOR_TEST_VENV: run scripts/test.sh once first" >&2
  exit 1
}

echo "== the release binary, with its symbol table"
cargo rustc --locked --release --bin secret-injector -- -C strip=none
mkdir -p target/link-order
cp target/release/secret-injector target/link-order/secret-injector
echo "== each role under callgrind"
LINK_ORDER_BIN="$PWD/target/link-order/secret-injector" cargo bench --locked --profile release --bench link_order
echo "== relinking with the new order"
cargo build --locked --release --bin secret-injector
