"""Session limits through rwsplit-proxy with real Python clients.

Usage: limits_check.py PORT MAX_ALLOWED_PACKET
- PyMySQL sends a statement bigger than the proxy's max_allowed_packet: error 1153, and the
  connection is closed afterwards.
- mysql-connector-python (server-side prepared statements) sends a parameter as long data
  (COM_STMT_SEND_LONG_DATA, 128 KiB chunks) past the bound: the execution fails with 1105;
  after COM_STMT_RESET (the connector resets a statement it executes again) a small one works.
Prints one JSON object.
"""
import io
import json
import sys

import mysql.connector
import pymysql

port, limit = int(sys.argv[1]), int(sys.argv[2])
out = {}
conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                       database="rwsplit_test", autocommit=True)
cur = conn.cursor()
try:
    cur.execute("SELECT '" + "x" * (2 * limit) + "'")
    out["big_packet"] = "accepted"
except pymysql.err.MySQLError as e:
    out["big_packet"] = e.args[0]
try:
    cur.execute("SELECT 1")
    out["after_big_packet"] = "open"
except pymysql.err.MySQLError:
    out["after_big_packet"] = "closed"

conn = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                               database="rwsplit_test", use_pure=True, autocommit=True)
cur = conn.cursor(prepared=True)
try:
    cur.execute("SELECT LENGTH(?)", (io.BytesIO(b"y" * (2 * limit)),))
    cur.fetchall()
    out["long_data"] = "accepted"
except mysql.connector.Error as e:
    out["long_data"] = e.errno
    out["long_data_msg"] = e.msg
cur.execute("SELECT LENGTH(?)", (io.BytesIO(b"z" * (limit // 4)),))
out["small_long_data"] = cur.fetchone()[0]
cur2 = conn.cursor()
cur2.execute("SELECT 41 + 1")
out["session_after"] = cur2.fetchone()[0]
print(json.dumps(out))
