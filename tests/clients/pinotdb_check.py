"""Runs a few queries through the pinotdb client (PyPI) against a Shoal server and prints what
the client returned as one JSON object; tests/pinotdb.rs compares it with the rows it wrote.

    python3 tests/clients/pinotdb_check.py HOST PORT TOKEN TABLE
"""

import importlib.metadata
import json
import sys

try:
    import pinotdb
    from pinotdb import exceptions
except ImportError as e:
    print(f"pinotdb is not installed ({e}): python3 -m pip install -r tests/clients/requirements.txt",
          file=sys.stderr)
    sys.exit(3)


def main():
    host, port, token, table = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    def connect(**kwargs):
        return pinotdb.connect(host=host, port=port, path="/query/sql", scheme="http",
                               extra_request_headers=f"Authorization=Bearer {token}", **kwargs)

    conn = connect()
    cur = conn.cursor()

    def run(sql, cursor=cur):
        cursor.execute(sql)
        return {"columns": [d[0] for d in cursor.description], "rows": [list(r) for r in cursor.fetchall()]}

    out = {"version": importlib.metadata.version("pinotdb")}
    out["count"] = run(f"SELECT count(*) AS n FROM {table}")
    out["group_by"] = run(
        f"SELECT key, count(*) AS n, sum(id) AS total FROM {table} GROUP BY key ORDER BY key LIMIT 100")
    out["equals"] = run(f"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM {table} WHERE key = 'key-5'")
    out["like"] = run(f"SELECT count(*) AS n FROM {table} WHERE key LIKE 'key-1%'")
    # A selection without LIMIT: Pinot's default limit of 10 rows.
    out["no_limit"] = len(run(f"SELECT id FROM {table}")["rows"])
    # preserve_types=True appends " OPTION(preserveType='true')" to every query.
    typed = connect(preserve_types=True).cursor()
    out["preserve_types"] = run(f"SELECT count(*) AS n, sum(id) AS total FROM {table}", typed)
    out["preserve_types_group_by"] = run(
        f"SELECT key, count(*) FROM {table} GROUP BY key ORDER BY key LIMIT 2", typed)
    # use_multistage_engine=True sends "queryOptions": "useMultistageEngine=true".
    multistage = connect(use_multistage_engine=True).cursor()
    out["multistage"] = run(f"SELECT count(*) AS n FROM {table}", multistage)
    try:
        cur.execute("SELECT count(*) FROM no_such_table")
        out["unknown_table"] = "no error"
    except exceptions.DatabaseError as e:
        out["unknown_table"] = type(e).__name__
    print(json.dumps(out))


main()
