"""Opens N idle client connections to rwsplit-proxy and reports the proxy's RSS growth per
connection (for docs/BENCHMARKS.md).

Usage: idle_conns.py PORT PROXY_PID [N]. Each connection completes the handshake
(mysql_native_password) with raw packets, then stays idle: no statement runs, so the proxy
holds no backend connection for it.
"""
import hashlib
import resource
import socket
import struct
import sys
import time

port, pid = int(sys.argv[1]), int(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1000)), hard))


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_packet(s):
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    length = head[0] | head[1] << 8 | head[2] << 16
    body = b""
    while len(body) < length:
        body += s.recv(length - len(body))
    return head[3], body


def login(password=b"app-password"):
    s = socket.create_connection(("127.0.0.1", port))
    seq, g = read_packet(s)
    end = g.index(b"\0", 1)
    rest = g[end + 1:]
    nonce = rest[4:12] + rest[31:43]
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(nonce + hashlib.sha1(h1).digest()).digest()
    auth = bytes(a ^ b for a, b in zip(h1, h2))
    caps = 0x0000_0200 | 0x0000_8000 | 0x0008_0000 | 0x0100_0000 | 0x2000 | 1
    body = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"app\0" + bytes([len(auth)]) + auth
    body += b"mysql_native_password\0"
    s.sendall(struct.pack("<I", len(body))[:3] + bytes([seq + 1]) + body)
    _, ok = read_packet(s)
    assert ok[0] == 0, ok
    return s


before = rss_kib()
conns = []
start = time.time()
for _ in range(n):
    conns.append(login())
elapsed = time.time() - start
time.sleep(2)
after = rss_kib()
print(f"connections={n} rss_before_kib={before} rss_after_kib={after} "
      f"per_connection_kib={(after - before) / n:.1f} connect_seconds={elapsed:.1f}")
for c in conns:
    c.close()
