"""mysql-connector-python through rwsplit-proxy with server-side prepared statements
(cursor(prepared=True)): reads on replicas, a write on the primary.

Usage: connector_check.py PORT. Prints one JSON object the Rust test checks.
"""
import json
import sys

import mysql.connector

port = int(sys.argv[1])
conn = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                               database="rwsplit_test", autocommit=True, use_pure=True,
                               auth_plugin="mysql_native_password")
cur = conn.cursor(prepared=True)
reads = set()
for i in range(20):
    cur.execute("SELECT @@port, %s + 1", (i,))
    row = cur.fetchone()
    assert row[1] == i + 1, row
    reads.add(row[0])
cur.execute("CREATE TABLE IF NOT EXISTS conn_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), port INT)")
cur.execute("INSERT INTO conn_t (v, port) VALUES (%s, @@port)", ("hello",))
inserted = cur.lastrowid
cur.execute("SELECT port, v FROM conn_t WHERE id = %s FOR UPDATE", (inserted,))
write_port, v = cur.fetchone()
print(json.dumps({"reads": sorted(reads), "write_port": write_port,
                  "last_insert_id_ok": inserted > 0 and v == "hello"}))
