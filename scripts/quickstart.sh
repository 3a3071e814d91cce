#!/usr/bin/env bash
# Shoal's quickstart. For now it validates the sample Pinot table config and schema shipped in
# examples/config and prints the normalised config (secrets as ***).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null 2>&1 || { echo "error: cargo is required: install Rust with rustup" >&2; exit 1; }
cargo run --quiet --example serve -- \
  --table-config examples/config/events.table.json \
  --schema examples/config/events.schema.json \
  --validate
