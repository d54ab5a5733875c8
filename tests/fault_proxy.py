"""A fault-injecting TCP proxy on loopback, in front of fakepve (tests/adversarial/test_pve_faults.py).

The runner talks TLS to fakepve *through* the proxy and still verifies fakepve's own certificate:
the proxy listens on fakepve's address (127.0.0.N, the name in the certificate) on a port of its
own and passes every byte through untouched. It never terminates or parses TLS.

Which request a connection carries is therefore not read from the bytes. The proxy learns it from
fakepve itself: `attach(fake)` wraps fakepve's request recorder (`_record`, called once the request
and its body were read, before it is answered), which names the peer of the request: the proxy's
upstream socket, hence the client connection. So a fault aimed at "the answer to POST .../clone"
hits exactly that answer, even with several VMs worked on at once, each on its own connection.

Faults (each rule fires `times` times, then is spent; `fired` lists what happened):

- `lose_answer(method, path)`: the request is forwarded and served; as soon as the server starts
  answering it (the first server->client bytes after the request was recorded; there are no
  others, HTTP/1.1 does not pipeline), the client side is reset (RST) and the answer dropped.
  This is "reset after the request was served": PVE acted, the runner never hears of it.
- `hold_answer(method, path)`: the request is served, the answer is never forwarded (a hang past
  PVE_TIMEOUT); the connection stays open until the client gives up and closes it.
- `reset_next(method, path)` / `hold_next(method, path)`: once a request matching the rule was
  answered, the *next* request on the same connection is reset (or held) before a byte of it
  reaches PVE (the client's first bytes after that answer are never forwarded).
- `reset_connections(n)`: the next n connections are reset as soon as they are accepted (before
  the TLS handshake, so before any request reaches PVE).
- `hang_all()`: every connection is accepted and then nothing is forwarded either way.
- `slow(chunk, delay)`: every byte in both directions is trickled, `chunk` bytes per `delay` s.
- `pause()` / `resume()`: answers wait (nothing is lost) until `resume()`: a run held mid-way.

Traffic stays on loopback: the proxy binds fakepve's 127.0.0.N and connects only to fakepve.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rule:
    kind: str  # lose_answer | hold_answer | reset_next | hold_next
    method: str
    path: str  # a regular expression searched in the request path
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.search(self.path, path) is not None


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket | None
    drop_answer: bool = False  # reset at the first server->client bytes
    hold_answer: bool = False  # discard every server->client byte
    next_fault: str | None = None  # "reset" or "hold": the next request from the client
    pending_next: str | None = None  # armed by a served request, active once it is answered
    hold_request: bool = False  # discard every client->server byte
    served: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0  # the upstream socket's own port: how fakepve names this connection


def _reset(sock: socket.socket | None) -> None:
    """Close with an RST (SO_LINGER 0) instead of an orderly FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """`with FaultProxy(host, port) as proxy:` forwards host:proxy.port to host:port."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.fired: list[str] = []
        self.trickle: tuple[int, float] | None = None
        self.hanging = False
        self.reset_count = 0
        self._lock = threading.Lock()
        self._by_port: dict[int, _Conn] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]

    # ------------------------------------------------------------ scripting

    @property
    def access_host(self) -> str:
        return f"{self.host}:{self.port}"

    def lose_answer(self, method: str, path: str, times: int | None = 1) -> None:
        self.rules.append(Rule("lose_answer", method, path, times))

    def hold_answer(self, method: str, path: str, times: int | None = 1) -> None:
        self.rules.append(Rule("hold_answer", method, path, times))

    def reset_next(self, method: str, path: str, times: int | None = 1) -> None:
        self.rules.append(Rule("reset_next", method, path, times))

    def hold_next(self, method: str, path: str, times: int | None = 1) -> None:
        self.rules.append(Rule("hold_next", method, path, times))

    def reset_connections(self, count: int) -> None:
        self.reset_count = count

    def hang_all(self) -> None:
        self.hanging = True

    def slow(self, chunk: int = 64, delay: float = 0.001) -> None:
        self.trickle = (chunk, delay)

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def clear(self) -> None:
        """No more faults: everything passes through (connections already held stay held)."""
        with self._lock:
            self.rules.clear()
            self.trickle = None
            self.hanging = False
            self.reset_count = 0

    def attach(self, fake: Any) -> None:
        """Learn from fakepve which request each connection carries (see the module docstring)."""
        original = fake._record

        def record(request: Any, body: Any) -> None:
            original(request, body)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer:
                self._served(int(peer[1]), request.method, request.path)

        fake._record = record

    # ------------------------------------------------------------ internals

    def _served(self, port: int, method: str, path: str) -> None:
        with self._lock:
            conn = self._by_port.get(port)
            if conn is None:
                return
            conn.served.append((method, path))
            for rule in list(self.rules):
                if not rule.matches(method, path):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                self.fired.append(f"{rule.kind} {method} {path}")
                if rule.kind == "lose_answer":
                    conn.drop_answer = True
                elif rule.kind == "hold_answer":
                    conn.hold_answer = True
                else:
                    conn.pending_next = "reset" if rule.kind == "reset_next" else "hold"
                break

    def start(self) -> FaultProxy:
        thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                reset = self.reset_count > 0
                if reset:
                    self.reset_count -= 1
                    self.fired.append("reset_connection")
                hanging = self.hanging
            if reset:
                _reset(client)
                continue
            upstream = None
            if not hanging:
                try:
                    upstream = socket.create_connection((self.host, self.upstream_port), timeout=5)
                except OSError:
                    _reset(client)
                    continue
            conn = _Conn(client, upstream)
            if upstream is not None:
                conn.port = upstream.getsockname()[1]
                with self._lock:
                    self._by_port[conn.port] = conn
            thread = threading.Thread(target=self._pump, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        trickle = self.trickle
        if trickle is None:
            sock.sendall(data)
            return
        chunk, delay = trickle
        for start in range(0, len(data), chunk):
            sock.sendall(data[start : start + chunk])
            time.sleep(delay)

    def _pump(self, conn: _Conn) -> None:
        """Both directions of one connection, in one thread (so a reset is never raced)."""
        sel = selectors.DefaultSelector()
        sel.register(conn.client, selectors.EVENT_READ, "client")
        if conn.upstream is not None:
            sel.register(conn.upstream, selectors.EVENT_READ, "upstream")
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(0.1):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    if key.data == "client":
                        if not self._from_client(conn, data):
                            return
                    elif not self._from_server(conn, data):
                        return
        finally:
            sel.close()
            with self._lock:
                self._by_port.pop(conn.port, None)
            for end in (conn.client, conn.upstream):
                if end is not None and end.fileno() != -1:
                    end.close()

    def _from_client(self, conn: _Conn, data: bytes) -> bool:
        with self._lock:
            fault, conn.next_fault = conn.next_fault, None
            if fault == "hold":
                conn.hold_request = True
            if fault:
                self.fired.append(f"{fault} before it reached PVE (after {conn.served[-1][1]})")
        if fault == "reset":
            _reset(conn.client)
            _reset(conn.upstream)
            return False
        if conn.hold_request or conn.upstream is None:
            return True  # held: never forwarded
        self._send(conn.upstream, data)
        return True

    def _from_server(self, conn: _Conn, data: bytes) -> bool:
        self._flowing.wait()
        with self._lock:
            drop, hold = conn.drop_answer, conn.hold_answer
            if conn.pending_next and not drop and not hold:
                # The armed request is being answered: the one after it gets the fault.
                conn.next_fault, conn.pending_next = conn.pending_next, None
        if drop:
            _reset(conn.client)
            _reset(conn.upstream)
            return False
        if hold:
            return True
        self._send(conn.client, data)
        return True
