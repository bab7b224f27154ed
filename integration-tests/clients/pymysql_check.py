"""PyMySQL through rwsplit-proxy: reads, a write, LAST_INSERT_ID, a transaction.

Usage: pymysql_check.py PORT. Prints one JSON object the Rust test checks.
"""
import json
import sys

import pymysql

port = int(sys.argv[1])
conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                       database="rwsplit_test", autocommit=True)
cur = conn.cursor()
reads = set()
for _ in range(20):
    cur.execute("SELECT @@port")
    reads.add(cur.fetchone()[0])
cur.execute("CREATE TABLE IF NOT EXISTS py_t (id INT AUTO_INCREMENT PRIMARY KEY, port INT)")
cur.execute("INSERT INTO py_t (port) VALUES (@@port)")
inserted = cur.lastrowid
cur.execute("SELECT LAST_INSERT_ID()")
lid = cur.fetchone()[0]
cur.execute("SELECT port FROM py_t WHERE id = %s FOR UPDATE", (inserted,))
write_port = cur.fetchone()[0]
conn.begin()
cur.execute("SELECT @@port")
in_tx = cur.fetchone()[0]
conn.commit()
print(json.dumps({"reads": sorted(reads), "write_port": write_port,
                  "last_insert_id_ok": lid == inserted and inserted > 0, "in_tx": in_tx}))
