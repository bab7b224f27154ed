"""PyMySQL authenticating with caching_sha2_password through rwsplit-proxy on a plain connection,
by full authentication: the password RSA-encrypted with the proxy's public key.

Usage: sha2_rsa_check.py PORT PASSWORD [PUBLIC_KEY_PEM_FILE]
Prints "ok PORT KEY" (KEY: "fetched" when the client asked the proxy for its public key, or
"given" when it used the file) or "denied CODE".

PyMySQL follows the plugin the greeting names (the proxy's is mysql_native_password), so the
client here announces caching_sha2_password itself, like libmysqlclient 8 does. And the proxy
checks the fast-path scramble against the password it knows, so a well-behaved client never
needs full authentication; this one sends a scramble that does not match (as a client whose
server has no cache entry for it) to make the proxy ask for it. Everything after that is
PyMySQL's own code: asking for the key (0x02), RSA-OAEP encryption with `cryptography`.
"""
import sys

import pymysql
from pymysql import _auth, connections

port, password = int(sys.argv[1]), sys.argv[2]
key_file = sys.argv[3] if len(sys.argv) > 3 else None


class Sha2Client(connections.Connection):
    def _get_server_information(self):
        super()._get_server_information()
        self._auth_plugin_name = "caching_sha2_password"


_auth.scramble_caching_sha2 = lambda password, salt: b"\x00" * 32

kwargs = dict(host="127.0.0.1", port=port, user="app", password=password,
              database="rwsplit_test", autocommit=True, ssl=None)
if key_file:
    with open(key_file, "rb") as f:
        kwargs["server_public_key"] = f.read()
try:
    conn = Sha2Client(**kwargs)
except pymysql.err.OperationalError as e:
    print(f"denied {e.args[0]}")
    sys.exit(0)
assert conn.server_public_key.startswith(b"-----BEGIN PUBLIC KEY-----"), conn.server_public_key
cur = conn.cursor()
cur.execute("SELECT @@port")
print(f"ok {cur.fetchone()[0]} {'given' if key_file else 'fetched'}")
