"""A user configured in rwsplit-proxy with only its mysql_native_password hash, through real
Python clients.

Usage: hashed_user_check.py PORT
For PyMySQL and mysql-connector-python (pure, once naming caching_sha2_password so the proxy
must switch it to mysql_native_password): log in as `app` with its password, insert a row (the
primary), read @@port outside a transaction (a replica); then log in with a wrong password.
Prints one JSON object.
"""
import json
import sys

import mysql.connector
import pymysql

port = int(sys.argv[1])
out = {}


def use(name, conn):
    cur = conn.cursor()
    cur.execute("INSERT INTO hashed_user_rows (client) VALUES (%s)", (name,))
    cur.execute("SELECT @@port")
    out[name] = {"read_port": cur.fetchone()[0]}
    conn.close()


use("pymysql", pymysql.connect(host="127.0.0.1", port=port, user="app", password="app-password",
                               database="rwsplit_test", autocommit=True))
use("connector", mysql.connector.connect(host="127.0.0.1", port=port, user="app",
                                         password="app-password", database="rwsplit_test",
                                         use_pure=True, autocommit=True))
use("connector_sha2", mysql.connector.connect(host="127.0.0.1", port=port, user="app",
                                              password="app-password", database="rwsplit_test",
                                              use_pure=True, autocommit=True,
                                              auth_plugin="caching_sha2_password"))
try:
    pymysql.connect(host="127.0.0.1", port=port, user="app", password="wrong",
                    database="rwsplit_test")
    out["wrong_pymysql"] = "accepted"
except pymysql.err.MySQLError as e:
    out["wrong_pymysql"] = e.args[0]
try:
    mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="wrong",
                            database="rwsplit_test", use_pure=True)
    out["wrong_connector"] = "accepted"
except mysql.connector.Error as e:
    out["wrong_connector"] = e.errno
print(json.dumps(out))
