#!/usr/bin/env bash
# Fuzzes each of Shoal's parsers and its Pinot functions for a bounded time with cargo-fuzz
# (libFuzzer + AddressSanitizer):
#   json_decoder    schema-driven JSON decoding of one record (fuzz/src/lib.rs: json_decoder)
#   kpl             the KPL de-aggregator, raw and framed with a valid MD5
#   segment_loader  the sealed-segment loader, raw and with the checksums recomputed
#   config          the table config + schema parser (the two separated by a NUL byte)
#   functions       a SQL call of one of the Pinot functions, arguments as literals (extreme
#                   integers, odd units, patterns, paths) and as columns, through QueryEngine
# Usage: bash scripts/fuzz.sh [seconds per target, default 60] [target ...]
# The seeds kept in the repo are fuzz/corpus/<target>/; inputs the fuzzer finds that grow
# coverage go to fuzz/work/<target>/ (not kept). A failing input is written to
# fuzz/artifacts/<target>/ and the script fails; once fixed, keep the input in
# fuzz/regressions/<target>/, where the test command replays it (fuzz/tests/corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json_decoder kpl segment_loader config functions)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes unstable rustc flags (the sanitizer, coverage passes). The machine's one
# toolchain is stable, which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# The dev profile (unoptimised, debug assertions on): the whole dependency tree (DataFusion,
# the AWS SDK for the config target) builds in minutes rather than the release profile's ~45.
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "fuzz/work/$target"
  # Its own target dir: the fuzzing flags would otherwise invalidate the test build's.
  cargo fuzz run --dev --features libfuzzer --target-dir fuzz/target "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
done
echo "== every target ran ${seconds}s without a failure"
