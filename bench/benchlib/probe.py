"""Outside health probes for container benchmarks: `GET /health` on published ports, many at
once, from one thread, and titan-supervisor's own view through its control socket.

A published port is served by docker-proxy, which accepts a connection before the container
listens and forwards it to the container's address: while the container's network is not up
yet, the forwarded SYN goes unanswered and the client's connection hangs for a TCP
retransmit (a second). So every port gets a fresh attempt every `interval` even while older
ones are still in flight (a few at most), each attempt abandoned after `attempt_timeout`: a
hung attempt never hides the moment the service answers. At `max_inflight` attempts for one
port the oldest is abandoned to make room (an answer takes a millisecond or two: an attempt
that has waited `max_inflight` x `interval` is one that hangs). This matters right after a
kill: the dead container's docker-proxy still accepts for a while and forwards into a network
that is gone.

Each attempt that docker-proxy accepts costs it a connection to the container: polling every
port from the start would load a 2-core machine during the very bring-up being measured. A
poller can therefore be given `armed()`, the ports worth polling yet (a service whose process
has started: it cannot answer before)."""

import errno
import http.client
import json
import selectors
import socket
import struct
import threading
import time

from .procs import BenchError

REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
LINGER_RST = struct.pack("ii", 1, 0)       # close with a reset: no TIME_WAIT left behind


class _Attempt:
    __slots__ = ("port", "sock", "started", "buf", "sent")

    def __init__(self, port, sock, started):
        self.port, self.sock, self.started, self.buf, self.sent = port, sock, started, b"", False


class HealthPoller:
    """Polls `GET /health` on 127.0.0.1:PORT for every port until each has answered 200 once.
    `healthy[port]` is then (wall ns, perf_counter s) of that answer."""

    def __init__(self, ports, interval=0.010, attempt_timeout=1.0, max_inflight=8, armed=None):
        self.ports = list(ports)
        self.armed = armed            # () -> ports to poll now; None: all of them
        self.interval, self.attempt_timeout, self.max_inflight = interval, attempt_timeout, \
            max_inflight
        self.healthy = {}
        self.attempts = 0
        self._sel = selectors.DefaultSelector()
        self._inflight = {p: [] for p in self.ports}
        self._last = {p: 0.0 for p in self.ports}

    def _start(self, port, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        err = s.connect_ex(("127.0.0.1", port))
        self.attempts += 1
        self._last[port] = now
        if err not in (0, errno.EINPROGRESS):
            s.close()                       # refused at once: nobody listens yet
            return
        a = _Attempt(port, s, now)
        self._inflight[port].append(a)
        self._sel.register(s, selectors.EVENT_WRITE, a)

    def _close(self, a):
        try:
            self._sel.unregister(a.sock)
        except (KeyError, ValueError):
            pass
        a.sock.close()
        try:
            self._inflight[a.port].remove(a)
        except ValueError:
            pass

    def _done(self, port):
        self.healthy[port] = (time.time_ns(), time.perf_counter())
        for a in list(self._inflight[port]):
            self._close(a)

    def _event(self, a, mask):
        if a.sock.fileno() < 0:
            return None                     # closed by an earlier event of this round
        if not a.sent:
            if a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return self._close(a)
            try:
                a.sock.send(REQUEST)
            except OSError:
                return self._close(a)
            a.sent = True
            self._sel.modify(a.sock, selectors.EVENT_READ, a)
            return None
        try:
            data = a.sock.recv(256)
        except OSError:
            return self._close(a)
        if not data:
            return self._close(a)
        a.buf += data
        if b"\n" in a.buf:
            words = a.buf.split(b"\n", 1)[0].split()
            ok = len(words) >= 2 and words[0].startswith(b"HTTP/1.") and words[1] == b"200"
            self._close(a)
            if ok and a.port not in self.healthy:
                self._done(a.port)
        return None

    def step(self, max_wait):
        """One round: start the attempts that are due, wait up to max_wait for events."""
        now = time.perf_counter()
        due = now + max_wait
        armed = self.ports if self.armed is None else self.armed()
        for p in armed:
            if p in self.healthy:
                continue
            for a in [a for a in self._inflight[p] if now - a.started > self.attempt_timeout]:
                self._close(a)
            if now - self._last[p] >= self.interval:
                if len(self._inflight[p]) >= self.max_inflight:
                    self._close(self._inflight[p][0])
                self._start(p, now)
            due = min(due, self._last[p] + self.interval)
        timeout = max(0.0, due - time.perf_counter())
        if not self._sel.get_map():
            time.sleep(timeout)
            return
        for key, mask in self._sel.select(timeout):
            self._event(key.data, mask)

    def all_healthy(self):
        return len(self.healthy) == len(self.ports)

    def run(self, timeout, alive=None, what="every service to answer /health 200"):
        """Polls until every port has answered 200; BenchError at the deadline. `alive()` is
        called now and then and may raise to end the wait early."""
        deadline = time.perf_counter() + timeout
        checked = 0.0
        try:
            while not self.all_healthy():
                now = time.perf_counter()
                if now >= deadline:
                    missing = sorted(set(self.ports) - set(self.healthy))
                    raise BenchError(f"timed out after {timeout:g} s waiting for {what} "
                                     f"(ports {missing[:8]} not yet)")
                if alive is not None and now - checked > 0.1:
                    alive()
                    checked = now
                self.step(0.005)
        finally:
            self.close()
        return self.healthy

    def close(self):
        for p in self.ports:
            for a in list(self._inflight[p]):
                self._close(a)
        self._sel.close()


def health_ok(port, timeout=1.0):
    """One blocking `GET /health` on a published port: True on 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(REQUEST)
            data = s.recv(64)
        return data.split(b"\r\n", 1)[0].split()[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


# --- titan-supervisor's own view ---------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_request(sock_path, method, path, timeout=60.0):
    """One HTTP request on a Unix socket (dockerd's Engine API, titan's control socket):
    (status, body); OSError or HTTPException when the socket does not answer."""
    conn = UnixHTTPConnection(str(sock_path), timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def titan_status(sock_path, timeout=1.0):
    """GET /v1/status on titan-supervisor's control socket (what `status --json` prints), as a
    dict; None while the socket does not answer."""
    conn = UnixHTTPConnection(str(sock_path), timeout)
    try:
        conn.request("GET", "/v1/status")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def all_healthy_in(status, count):
    services = (status or {}).get("services", [])
    return len(services) == count and all(s.get("state") == "healthy" for s in services)


class StatusWatch(threading.Thread):
    """Polls titan-supervisor's /v1/status every `interval` in the background and notes the
    wall time of the first answer in which all `count` services are healthy."""

    def __init__(self, sock_path, count, interval=0.010, timeout=60.0):
        super().__init__(daemon=True)
        self.sock_path, self.count, self.interval, self.timeout = sock_path, count, interval, \
            timeout
        self.all_healthy_ns = None
        self.last = None
        self._halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self._halt.is_set() and time.monotonic() < deadline:
            st = titan_status(self.sock_path, timeout=1.0)
            if st is not None:
                self.last = st
                if all_healthy_in(st, self.count):
                    self.all_healthy_ns = time.time_ns()
                    return
            self._halt.wait(self.interval)

    def finish(self, timeout):
        """Waits up to timeout for the all-healthy answer, then stops polling."""
        self.join(timeout)
        self._halt.set()
        self.join(2.0)
        return self.all_healthy_ns
