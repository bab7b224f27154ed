"""PyMySQL through the proxy: the handshake thread id is CONNECTION_ID(), and
Connection.kill(id) (COM_PROCESS_KILL) ends another session in the middle of a statement.
Prints one JSON verdict line. Usage: kill_check.py <proxy port>"""
import json
import sys
import threading
import time

import pymysql

port = int(sys.argv[1])


def connect():
    return pymysql.connect(host="127.0.0.1", port=port, user="app",
                           password="app-password", database="rwsplit_test")


victim, killer = connect(), connect()
with victim.cursor() as cur:
    cur.execute("SELECT CONNECTION_ID()")
    (cid,) = cur.fetchone()
result = {}


def sleep():
    try:
        with victim.cursor() as cur:
            cur.execute("SELECT SLEEP(10)")
            result["rows"] = cur.fetchall()
    except pymysql.MySQLError as e:
        result["error"] = e.args[0]


t = threading.Thread(target=sleep)
t.start()
time.sleep(0.5)
started = time.time()
killer.kill(victim.thread_id())
t.join(5)
elapsed = time.time() - started
with killer.cursor() as cur:
    cur.execute("SELECT 1")
    alive = cur.fetchone() == (1,)
print(json.dumps({
    "thread_id_matches": cid == victim.thread_id(),
    "victim_error": result.get("error"),
    "elapsed": round(elapsed, 3),
    "fast": elapsed < 1.0,
    "killer_alive": alive,
}))
