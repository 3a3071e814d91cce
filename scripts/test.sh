#!/usr/bin/env bash
# Runs every test of Shoal from a fresh clone, installing what the tests need first:
# the Kinesis emulator (npm package kinesis-local, pinned in tools/kinesis-local), DuckDB and
# the pinotdb client and moto's S3 server from PyPI (pinned in the requirements files of
# benches/compare, tests/clients and tests/deepstore),
# and Debian's chromium with chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required: $2" >&2; exit 1; }; }
need cargo "install Rust with rustup (https://rustup.rs)"
need node "install Node.js 18 or newer (Debian: apt-get install nodejs npm)"
need npm "install npm (Debian: apt-get install npm)"
need python3 "install Python 3 with pip (Debian: apt-get install python3 python3-pip)"

echo "== installing the Kinesis emulator (kinesis-local, pinned in tools/kinesis-local)"
npm ci --prefix tools/kinesis-local --no-audit --no-fund --loglevel=error

echo "== installing DuckDB for the comparison tests (benches/compare/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r benches/compare/requirements.txt

echo "== installing the pinotdb client for the client test (tests/clients/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt

echo "== installing moto's S3 server for the deep-store tests (tests/deepstore/requirements.txt)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/deepstore/requirements.txt

# Debian packages: chromium and chromium-driver for the console test, strace for the test
# that checks which directory changes are fsynced (tests/durability.rs).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ -n "$missing" ]; then
  echo "== installing Debian's$missing"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing >/dev/null
fi

# A clean clone builds once: incremental compilation would only add gigabytes of session data
# to the target directory (set CARGO_INCREMENTAL=1 to keep it while iterating).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo doc (every public item documented, no broken link: warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "== cargo test (every crate, unit and integration tests)"
cargo test --workspace --locked "$@"
