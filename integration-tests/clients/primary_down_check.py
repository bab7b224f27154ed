"""PyMySQL connects and reads through rwsplit-proxy while the primary is down.

Usage: primary_down_check.py PORT. Tries PyMySQL's defaults (autocommit off: it sends
SET AUTOCOMMIT = 0), autocommit=True, an explicit charset with init_command, and a USE; the others
then read (with autocommit off every statement is in a transaction, kept to the writer). Prints one JSON object: {"ok": bool, "cases": {name: "ok" | error}}.
"""
import json
import sys

import pymysql

port = int(sys.argv[1])
base = dict(host="127.0.0.1", port=port, user="app", password="app-password",
            connect_timeout=5, read_timeout=5)
cases = {
    "defaults": dict(database="rwsplit_test"),
    "autocommit": dict(database="rwsplit_test", autocommit=True),
    "charset_init": dict(database="rwsplit_test", charset="utf8mb4", autocommit=True,
                         init_command="SET NAMES utf8mb4"),
    "use": dict(autocommit=True),
}
result = {}
for name, extra in cases.items():
    try:
        conn = pymysql.connect(**base, **extra)
        cur = conn.cursor()
        if name == "defaults":
            # autocommit=0: every statement is in a transaction, which needs the writer.
            conn.close()
            result[name] = "ok"
            continue
        if name == "use":
            cur.execute("USE rwsplit_test")
        cur.execute("SELECT @@port")
        cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM avail_t")
        cur.fetchone()
        conn.close()
        result[name] = "ok"
    except Exception as e:  # noqa: BLE001 - the test reports whatever failed
        result[name] = repr(e)
print(json.dumps({"ok": all(v == "ok" for v in result.values()), "cases": result}))
