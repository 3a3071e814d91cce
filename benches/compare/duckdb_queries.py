#!/usr/bin/env python3
"""Runs SQL queries on DuckDB over an NDJSON file of Shoal's page-view events.

Used by the parity test (crates/query/tests/duckdb_parity.rs) and by the peer comparison.
Input on stdin: {"ndjson": path, "queries": [sql, ...], "repeat": n}.
Output on stdout: {"load_ms": ..., "results": [[row, ...], ...], "times_ms": [[...], ...]}.
Integers stay integers (the comparison checks them exactly); DECIMAL values become floats.
"""
import decimal
import json
import sys
import time

import duckdb


def main():
    request = json.load(sys.stdin)
    con = duckdb.connect()
    threads = request.get("threads")
    if threads:
        con.execute(f"SET threads TO {int(threads)}")
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE events AS SELECT * FROM read_json(?, format='newline_delimited', columns={"
        "'event_id': 'VARCHAR', 'event_type': 'VARCHAR', 'user_id': 'VARCHAR', 'country': 'VARCHAR',"
        "'device': 'VARCHAR', 'page': 'VARCHAR', 'tags': 'VARCHAR[]', 'duration_ms': 'BIGINT',"
        "'revenue': 'DOUBLE', 'timestamp': 'BIGINT'})",
        [request["ndjson"]],
    )
    load_ms = (time.perf_counter() - started) * 1000
    results, times = [], []
    for sql in request["queries"]:
        runs = []
        rows = None
        for _ in range(int(request.get("repeat", 1))):
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            runs.append((time.perf_counter() - t) * 1000)
        results.append([[float(v) if isinstance(v, decimal.Decimal) else v for v in row] for row in rows])
        times.append(runs)
    json.dump({"load_ms": load_ms, "results": results, "times_ms": times}, sys.stdout)


if __name__ == "__main__":
    main()
