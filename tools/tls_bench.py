#!/usr/bin/env python3
"""What TLS costs the control plane and the REST API: runs `gear local -services` with TLS off
and on (a self-signed certificate made with openssl), then times

  - `gear info` (a new control connection: TCP, TLS if on, the secret's handshake, one request),
  - REST GET /api/v1.0/master/applist on one kept-alive connection (HTTP or HTTPS),
  - the same with a new connection per request (the TLS handshake each time).

Usage: python3 tools/tls_bench.py [GEAR_BINARY] (default target/release/gear). Prints one
line per measurement with p50 and p99 in milliseconds.
"""
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentiles(samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return f"p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms (n={len(samples)})"


def wait_port(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def run(gear, tmp, tls):
    master, port = free_port(), free_port()
    conf = os.path.join(tmp, f"{'tls' if tls else 'plain'}.conf")
    lines = [
        f'gearpump.cluster.masters = ["127.0.0.1:{master}"]',
        'gearpump.cluster.secret = "the benchmark secret, long enough"',
        f"gearpump.services.http = {port}",
        f'gearpump.log.daemon.dir = "{tmp}/logs"',
    ]
    if tls:
        lines += [
            "gearpump.tls.enabled = true",
            f'gearpump.tls.cert-file = "{tmp}/node.crt"',
            f'gearpump.tls.key-file = "{tmp}/node.key"',
            "gearpump.services.tls.enabled = true",
        ]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    local = subprocess.Popen(
        [gear, "-conf", conf, "local", "-services", "-workernum", "1"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        mode = "TLS" if tls else "plain"
        infos = []
        for _ in range(30):
            t = time.perf_counter()
            subprocess.run([gear, "-conf", conf, "info"], cwd=tmp, check=True, capture_output=True)
            infos.append(time.perf_counter() - t)
        print(f"{mode:5} gear info (process start + connect + one request): {percentiles(infos)}")
        ctx = ssl.create_default_context(cafile=f"{tmp}/node.crt") if tls else None
        connect = (
            (lambda: http.client.HTTPSConnection("127.0.0.1", port, context=ctx))
            if tls
            else (lambda: http.client.HTTPConnection("127.0.0.1", port))
        )
        kept = connect()
        for _ in range(50):  # warm up
            kept.request("GET", "/api/v1.0/master/applist")
            kept.getresponse().read()
        same = []
        for _ in range(2000):
            t = time.perf_counter()
            kept.request("GET", "/api/v1.0/master/applist")
            kept.getresponse().read()
            same.append(time.perf_counter() - t)
        print(f"{mode:5} REST applist, one kept-alive connection: {percentiles(same)}")
        fresh = []
        for _ in range(500):
            t = time.perf_counter()
            c = connect()
            c.request("GET", "/api/v1.0/master/applist")
            c.getresponse().read()
            c.close()
            fresh.append(time.perf_counter() - t)
        print(f"{mode:5} REST applist, a new connection each time: {percentiles(fresh)}")
    finally:
        local.kill()
        local.wait()


def main():
    gear = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/gear")
    tmp = tempfile.mkdtemp(prefix="gear-tls-bench-")
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "1", "-subj", "/CN=gearpump", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", f"{tmp}/node.key", "-out",
             f"{tmp}/node.crt"],
            check=True,
            capture_output=True,
        )
        for tls in (False, True, False, True):
            run(gear, tmp, tls)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
