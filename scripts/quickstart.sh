#!/usr/bin/env bash
# Shoal's quickstart: starts the Kinesis emulator (kinesis-local, installed from npm), creates a
# stream with 4 shards, writes realistic page-view events into it, and serves a table over it
# with the query console. Ctrl+C stops all of it.
#
# The first run builds Shoal (about 13-15 minutes on a 2-core machine, mostly the AWS SDK and
# DataFusion); later runs start in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required: $2" >&2; exit 1; }; }
need cargo "install Rust with rustup (https://rustup.rs)"
need node "install Node.js 18 or newer (Debian: apt-get install nodejs npm)"
need npm "install npm (Debian: apt-get install npm)"

KINESIS_PORT="${KINESIS_PORT:-4568}"
LISTEN="${LISTEN:-127.0.0.1:8099}"
DATA_DIR="${DATA_DIR:-data/quickstart}"
RATE="${RATE:-200}"

echo "== installing the Kinesis emulator (kinesis-local, pinned in tools/kinesis-local)"
npm ci --prefix tools/kinesis-local --no-audit --no-fund --loglevel=error

echo "== building Shoal (the first build takes a while; later ones are quick)"
cargo build --example serve --example generate

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "== starting kinesis-local on 127.0.0.1:$KINESIS_PORT"
KINESIS_MOCK_PLAIN_PORT="$KINESIS_PORT" KINESIS_MOCK_TLS_PORT="$((KINESIS_PORT - 1))" \
  KINESIS_MOCK_CERT_PATH="$PWD/tools/kinesis-local/node_modules/kinesis-local/server.json" \
  LOG_LEVEL=WARN node tools/kinesis-local/node_modules/kinesis-local/main.js > "${TMPDIR:-/tmp}/shoal-quickstart-kinesis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (echo > "/dev/tcp/127.0.0.1/$KINESIS_PORT") 2>/dev/null && break
  sleep 0.2
done

echo "== creating stream 'events' (4 shards) and writing $RATE events/s"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
"$target_dir/debug/examples/generate" --endpoint "http://127.0.0.1:$KINESIS_PORT" --stream events --shards 4 --rate "$RATE" &
pids+=($!)
sleep 2

table_config="examples/quickstart/events.table.json"
if [ "$KINESIS_PORT" != "4568" ]; then
  table_config="${TMPDIR:-/tmp}/shoal-quickstart-table.json"
  sed "s#http://127.0.0.1:4568#http://127.0.0.1:$KINESIS_PORT#" examples/quickstart/events.table.json > "$table_config"
fi

"$target_dir/debug/examples/serve" --table-config "$table_config" \
  --schema examples/quickstart/events.schema.json --data-dir "$DATA_DIR" --listen "$LISTEN" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$LISTEN/health" >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<EOF2

  Shoal is running.
    Console:          http://$LISTEN/
    Pinot broker API: curl -s http://$LISTEN/query/sql -d '{"sql": "SELECT count(*) FROM events"}'

  Try these in the console:
    SELECT count(*) FROM events
    SELECT country, count(*) AS views, sum(revenue) AS revenue FROM events GROUP BY country ORDER BY views DESC LIMIT 10
    SELECT DATETRUNC('minute', "timestamp") AS minute, count(*) FROM events GROUP BY 1 ORDER BY 1 DESC LIMIT 5
    SELECT "context.referrer", DISTINCTCOUNT(user_id) FROM events GROUP BY 1 ORDER BY 2 DESC
    SELECT PERCENTILE(duration_ms, 95) FROM events WHERE event_type = 'page_view'

  Ctrl+C stops the server, the generator and the emulator.
EOF2
wait
