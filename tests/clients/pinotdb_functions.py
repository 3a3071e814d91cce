"""Runs Pinot function queries through the pinotdb client (PyPI) with Basic credentials (its
username/password arguments) against a Shoal server, and prints what the client returned for
each as one JSON object; tests/pinotdb.rs gives the queries and compares the answers with values
it computed by hand from the rows it wrote. Also tries a wrong password and no credentials.

    python3 tests/clients/pinotdb_functions.py HOST PORT USER PASSWORD < queries.json

queries.json is a JSON list of [name, sql] pairs. For each name the output holds either
{"columns", "types", "rows", "wire"} (rows as pinotdb gives them, types as the response's
dataSchema names them, wire: the rows as the server sent them) or {"error": "Type: message"}.
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
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    queries = json.load(sys.stdin)

    def connect(**kwargs):
        return pinotdb.connect(host=host, port=port, path="/query/sql", scheme="http", **kwargs)

    cur = connect(username=user, password=password).cursor()

    def run(sql, cursor=cur):
        cursor.execute(sql)
        wire = cursor.raw_query_response["response"].get("resultTable", {}).get("rows")
        return {
            "columns": [d[0] for d in cursor.description or []],
            "types": [c["type"] for c in cursor.schema or []],
            "rows": [list(r) for r in cursor.fetchall()],
            "wire": wire,
        }

    out = {"version": importlib.metadata.version("pinotdb"), "answers": {}}
    for name, sql in queries:
        try:
            out["answers"][name] = run(sql)
        except exceptions.Error as e:
            out["answers"][name] = {"error": f"{type(e).__name__}: {e}"}

    # A wrong password, and no credentials at all, are refused: pinotdb raises.
    def refused(cursor):
        try:
            cursor.execute("SELECT count(*) FROM pinotfns")
            return {"error": None}
        except exceptions.DatabaseError as e:
            status = (cursor.raw_query_response or {}).get("status_code")
            return {"error": type(e).__name__, "status": status}

    out["wrong_password"] = refused(connect(username=user, password=password + "-wrong").cursor())
    out["no_credentials"] = refused(connect().cursor())
    print(json.dumps(out))


main()
