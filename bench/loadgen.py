"""A separate process that fires signed Slack requests at a server and times each round trip.

Run as `python -m bench.loadgen URL SECRET [--sequential]` with a JSON list of form bodies on
stdin; prints `{"results": [[status, seconds, body], ...], "cpu_s": ...}`.

Built not to be the bottleneck (issue #17: one httpx client spent ~500 ms of CPU per burst of 50
in its connection pool): plain non-blocking sockets and one selector, one connection per
request, opened (and the TCP handshake done) before the clock starts; every request is signed
and encoded beforehand, so the burst is 50 `send`s in a row and then reading answers as they
come. `cpu_s` is the generator's own CPU time for the measured part, to show how little it is.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit

from sandbox.slack.deliver import sign

TIMEOUT = 30.0


def request_bytes(url: str, secret: str, body: str) -> bytes:
    """The signed POST of `body` to `url`, as Slack sends it (HTTP/1.1, form-encoded)."""
    parts = urlsplit(url)
    stamp = str(int(time.time()))
    data = body.encode()
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"X-Slack-Request-Timestamp: {stamp}\r\n"
            f"X-Slack-Signature: {sign(secret, stamp, body)}\r\n"
            "\r\n")
    return head.encode() + data


def complete(buffer: bytes) -> tuple[int, bytes] | None:
    """(status, body) once `buffer` holds a whole response (Content-Length or chunked)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    rest = buffer[end + 4:]
    if "content-length" in headers:
        length = int(headers["content-length"])
        return (status, rest[:length]) if len(rest) >= length else None
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return (status, _dechunk(rest)) if rest.endswith(b"0\r\n\r\n") else None
    return None  # read until the server closes


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2


def connect(url: str, count: int) -> list[socket.socket]:
    """`count` connections to the server of `url`, handshakes done."""
    parts = urlsplit(url)
    socks = []
    for _ in range(count):
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    return socks


def burst(socks: list[socket.socket], requests: list[bytes]) -> list[list[object]]:
    """Send every request on its own connection at once; [status, seconds, body] for each,
    timed from its own send to the last byte of its answer."""
    selector = selectors.DefaultSelector()
    started: list[float] = []
    buffers = [b""] * len(requests)
    results: list[list[object]] = [[0, TIMEOUT, ""] for _ in requests]
    for i, (sock, request) in enumerate(zip(socks, requests, strict=True)):
        started.append(time.perf_counter())
        sock.sendall(request)  # ~1 KB: it fits the socket buffer, this does not block
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    waiting = len(requests)
    deadline = time.monotonic() + TIMEOUT
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            i = int(key.data)
            sock = socks[i]
            chunk = sock.recv(65536)
            now = time.perf_counter()
            buffers[i] += chunk
            answer = complete(buffers[i])
            if answer is None and chunk:
                continue
            if answer is None:  # closed before a whole answer
                answer = (0, buffers[i])
            results[i] = [answer[0], now - started[i], answer[1].decode("utf-8", "replace")]
            selector.unregister(sock)
            waiting -= 1
    selector.close()
    for sock in socks:
        sock.close()
    return results


def fire(url: str, secret: str, bodies: list[str],
         sequential: bool = False) -> tuple[list[list[object]], float]:
    """Every body at once (or one after another, each on a fresh connection); the results and
    the generator's CPU seconds for the measured part."""
    requests = [request_bytes(url, secret, body) for body in bodies]
    socks = connect(url, len(requests))
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    if sequential:
        results = [burst([sock], [request])[0]
                   for sock, request in zip(socks, requests, strict=True)]
    else:
        results = burst(socks, requests)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return results, cpu_s


def main() -> int:
    """Entry point."""
    url, secret = sys.argv[1], sys.argv[2]
    sequential = "--sequential" in sys.argv[3:]
    results, cpu_s = fire(url, secret, json.load(sys.stdin), sequential)
    print(json.dumps({"results": results, "cpu_s": cpu_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
