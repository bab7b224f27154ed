"""mysql-connector-python authenticating with caching_sha2_password through rwsplit-proxy.

Usage: sha2_check.py PORT PASSWORD tls|plain. Prints "ok PORT" or "denied CODE".
"""
import sys

import mysql.connector

port, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kwargs = dict(host="127.0.0.1", port=port, user="app", password=password,
              database="rwsplit_test", use_pure=True, autocommit=True,
              auth_plugin="caching_sha2_password")
if mode == "tls":
    kwargs.update(ssl_disabled=False, ssl_verify_cert=False)
else:
    kwargs.update(ssl_disabled=True)
try:
    conn = mysql.connector.connect(**kwargs)
except mysql.connector.Error as e:
    print(f"denied {e.errno}")
    sys.exit(0)
cur = conn.cursor()
cur.execute("SELECT @@port")
print(f"ok {cur.fetchone()[0]}")
