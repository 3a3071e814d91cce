#!/usr/bin/env bash
# The peer comparison, one command from a clean clone:
#   bash benches/compare/run.sh [ROWS ...]        (default: 1000000 10000000)
# Generates the same NDJSON, loads it into Shoal (its ingest path) and into DuckDB (read_json),
# runs the query set (benches/compare/queries.json) on both, and prints medians and ratios.
# Every answer is checked against DuckDB's; a difference ends the run with a non-zero status.
# It builds Shoal with the release profile: the first build takes long on 2 cores (see README).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet --disable-pip-version-check -r benches/compare/requirements.txt
cargo build --release --example compare
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="${COMPARE_DIR:-${TMPDIR:-/tmp}/shoal-compare}"
rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=(1000000 10000000)
for n in "${rows[@]}"; do
  echo "== $n rows ($(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%Y-%m-%d))"
  "$target_dir/release/examples/compare" --rows "$n" --dir "$work" --repeat 5 ||
    { echo "run.sh: the comparison at $n rows failed (see above)" >&2; exit 1; }
done
