"""An account loaded from the primary (proxy.users_from_primary), through PyMySQL.

Usage: primary_user_check.py PORT USER PASSWORD
Logs in as USER, inserts a row into ufp_rows (the primary), reads @@port outside a transaction
(a replica); then logs in with a wrong password. Prints one JSON object.
"""
import json
import sys

import pymysql

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}
conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                       database="rwsplit_test", autocommit=True)
cur = conn.cursor()
cur.execute("INSERT INTO ufp_rows (client) VALUES ('pymysql')")
cur.execute("SELECT @@port")
out["read_port"] = cur.fetchone()[0]
conn.close()
try:
    pymysql.connect(host="127.0.0.1", port=port, user=user, password=password + "-wrong",
                    database="rwsplit_test")
    out["wrong"] = "accepted"
except pymysql.err.MySQLError as e:
    out["wrong"] = e.args[0]
print(json.dumps(out))
