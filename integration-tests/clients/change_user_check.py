"""mysql-connector-python changing user (COM_CHANGE_USER) through rwsplit-proxy.

Usage: change_user_check.py PORT PLUGIN USER2 PASSWORD2
Connects as app with PLUGIN (mysql_native_password or caching_sha2_password: the connector
names it again in COM_CHANGE_USER and answers the proxy's auth switch with it), changes to
USER2, then back to app with a wrong password. Prints one JSON object.
"""
import json
import sys

import mysql.connector

port, plugin, user2, password2 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
conn = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                               database="rwsplit_test", use_pure=True, autocommit=True,
                               auth_plugin=plugin, ssl_disabled=True)
out = {}
cur = conn.cursor()
cur.execute("SELECT CURRENT_USER()")
out["before"] = cur.fetchone()[0]
cur.close()
conn.cmd_change_user(username=user2, password=password2, database="rwsplit_test")
cur = conn.cursor()
cur.execute("SELECT CURRENT_USER(), DATABASE()")
out["after"], out["db"] = cur.fetchone()
cur.close()
try:
    conn.cmd_change_user(username="app", password="wrong-password", database="rwsplit_test")
    out["wrong"] = "accepted"
except mysql.connector.Error as e:
    out["wrong"] = e.errno
try:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    out["after_wrong"] = "open"
except mysql.connector.Error:
    out["after_wrong"] = "closed"
print(json.dumps(out))
