"""A client that stops reading its result, through rwsplit-proxy (PyMySQL, unbuffered cursor).

Usage: stalled_reader.py PORT SECONDS
Starts a large read, takes one row, then reads nothing for SECONDS while the proxy's write
to it stalls; then tries to read the rest. Prints one JSON object: rows read before the pause,
and whether the rest arrived or the connection was gone.
"""
import json
import sys
import time

import pymysql
import pymysql.cursors

port, pause = int(sys.argv[1]), float(sys.argv[2])
conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                       database="rwsplit_test", autocommit=True,
                       cursorclass=pymysql.cursors.SSCursor)
cur = conn.cursor()
cur.execute("SELECT REPEAT('x', 1000) FROM seq_1_to_200000")
first = cur.fetchone()
print(json.dumps({"phase": "stalled"}), flush=True)
time.sleep(pause)
out = {"first_row": first is not None}
try:
    rest = cur.fetchall()
    out["rest"] = len(rest)
except pymysql.err.MySQLError as e:
    out["rest"] = "error %s" % (e.args[0],)
print(json.dumps(out), flush=True)
