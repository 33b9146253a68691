#!/usr/bin/python3
"""Measures the user-space memory an idle WebSocket connection costs the server.

Opens N WebSocket connections to /echo (handshake completed, then silent), waits for
the server to settle, and reports the growth of the server's RSS (VmRSS in
/proc/PID/status, which counts user-space pages only: socket buffers and epoll
entries live in the kernel) divided by N. Connections are spread over several
127.0.0.x source addresses.

Usage: bench/idle_rss.py --pid PID --port PORT [--count 10000]
Prints one JSON line. Stays within the 20,000 open-files limit: keep --count below
~19,000.
"""
import argparse, base64, json, os, selectors, socket, sys, time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--sources", type=int, default=4, help="127.0.0.x source addresses")
    a = ap.parse_args()

    base = rss_kib(a.pid)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    socks, sel = [], selectors.DefaultSelector()
    t0 = time.time()
    pending = 0
    for i in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.0.{2 + i % a.sources}", 0))
        s.connect(("127.0.0.1", a.port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
        pending += 1
        if pending >= 500 or i == a.count - 1:  # collect the 101s in batches
            deadline = time.time() + 30
            while pending and time.time() < deadline:
                for k, _ in sel.select(timeout=1):
                    data = k.fileobj.recv(4096)
                    if not data.startswith(b"HTTP/1.1 101"):
                        sys.exit(f"unexpected answer: {data[:80]!r}")
                    sel.unregister(k.fileobj)
                    pending -= 1
            if pending:
                sys.exit("timed out waiting for handshakes")
    connect_s = time.time() - t0
    time.sleep(1.0)
    after = rss_kib(a.pid)
    per = (after - base) * 1024 / a.count
    print(json.dumps({"mode": "idle", "connections": a.count, "rss_before_kib": base,
                      "rss_after_kib": after, "bytes_per_connection": round(per, 1),
                      "connect_rate_per_s": round(a.count / connect_s)}))
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
