"""The service graphs the workloads run (names, tiers, ports, dependencies), the test-service
command line each service gets, and the reading of the services' own start log: bring-up time
and ordering violations are computed from the `NAME start|ready UNIX_NANOS` lines alone."""

from dataclasses import dataclass, field

# Private port ranges: 23000-23999 for the 16-service workloads, 24000-24999 for W4. Below the
# kernel's ephemeral range (32768-60999 by default) on purpose: a port inside it can be taken by
# any outgoing connection, and a tight connect loop to an unbound port in it eventually connects
# to itself (TCP simultaneous open), which then holds the port in TIME_WAIT for 60 s.
PORTS_W1, PORTS_W2, PORTS_W3, PORTS_W4 = 23001, 23101, 23201, 24001


@dataclass
class Service:
    name: str
    tier: int                      # 0-based
    port: int
    ready_after_ms: int
    deps: list = field(default_factory=list)

    def command(self, binary, start_log, pid_dir):
        # `test-service` selects the mode of titan-supervisor; titan-testsvc accepts and skips it.
        return [str(binary), "test-service", "--name", self.name,
                "--listen", f"127.0.0.1:{self.port}",
                "--ready-after", f"{self.ready_after_ms}ms",
                "--start-log", str(start_log),
                "--pid-file", str(pid_dir / f"{self.name}.pid")]


@dataclass
class Graph:
    """Services in tiers; `explicit` graphs list their dependencies (titan `depends_on`),
    the others rely on the implicit "every service of the previous tier"."""
    services: list
    tiers: list                    # list of lists of Service
    explicit: bool
    ready_after_ms: int

    @property
    def ports(self):
        return [s.port for s in self.services]

    @property
    def ideal_s(self):
        """Bring-up with no supervisor overhead: one readiness delay per tier."""
        return len(self.tiers) * self.ready_after_ms / 1000


def tiered(sizes, first_port, ready_after_ms, prefix="s"):
    """Tiers of the given sizes, each service depending on every service of the previous tier."""
    tiers, services, n = [], [], 0
    for t, size in enumerate(sizes):
        tier = []
        for _ in range(size):
            n += 1
            deps = [s.name for s in tiers[-1]] if tiers else []
            tier.append(Service(f"{prefix}{n:02d}", t, first_port + n - 1, ready_after_ms, deps))
        tiers.append(tier)
        services.extend(tier)
    return Graph(services, tiers, explicit=False, ready_after_ms=ready_after_ms)


def wide(n_tiers, width, fan_in, first_port, ready_after_ms):
    """n_tiers tiers of width services; service j of a tier depends on services j, j+7, j+13
    (mod width) of the previous tier: a fixed, spread-out choice of fan_in (<= 3) of them."""
    offsets = (0, 7, 13)[:fan_in]
    tiers, services = [], []
    for t in range(n_tiers):
        tier = []
        for j in range(width):
            deps = [tiers[-1][(j + o) % width].name for o in offsets] if tiers else []
            port = first_port + t * width + j
            tier.append(Service(f"w{t + 1:02d}-{j + 1:02d}", t, port, ready_after_ms, deps))
        tiers.append(tier)
        services.extend(tier)
    return Graph(services, tiers, explicit=True, ready_after_ms=ready_after_ms)


def w1_graph():
    return tiered([3, 3, 3, 3, 2, 2], PORTS_W1, 200)


def w2_graph():
    # Ready at once: W2 measures the restart path, not the readiness delay.
    return tiered([3, 3, 3, 3, 2, 2], PORTS_W2, 0)


def w3_graph():
    return tiered([3, 3, 3, 3, 2, 2], PORTS_W3, 0)


def w4_graph():
    return wide(10, 20, 3, PORTS_W4, 200)


# --- the start log -----------------------------------------------------------------------------

def read_start_log(path):
    """{name: {"start": [ns, ...], "ready": [ns, ...]}} in file order."""
    events = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return events
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("start", "ready"):
            events.setdefault(parts[0], {"start": [], "ready": []})[parts[1]].append(int(parts[2]))
    return events


def all_ready(graph, path):
    events = read_start_log(path)
    return all(events.get(s.name, {}).get("ready") for s in graph.services)


def bring_up(graph, path, t0_ns):
    """Bring-up figures of one run from the start log: seconds from t0 to the first start and
    to the last readiness, and the services that started before a dependency was ready."""
    events = read_start_log(path)
    start = {s.name: events[s.name]["start"][0] for s in graph.services}
    ready = {s.name: events[s.name]["ready"][0] for s in graph.services}
    violators = [s.name for s in graph.services
                 if any(start[s.name] < ready[d] for d in s.deps)]
    return {
        "bringup_s": (max(ready.values()) - t0_ns) / 1e9,
        "first_start_s": (min(start.values()) - t0_ns) / 1e9,
        "violations": len(violators),
        # Dependency ready -> dependent start, per dependent service: the gate's latency
        # (negative when the service did not wait).
        "gate_ms": [(start[s.name] - max(ready[d] for d in s.deps)) / 1e6
                    for s in graph.services if s.deps],
        "violators": violators,
        "restarts": sum(len(events[s.name]["start"]) - 1 for s in graph.services),
    }


# --- W5: log capture ---------------------------------------------------------------------------

MIB = 1024 * 1024


@dataclass
class Flooder:
    """A W5 service: prints `lines` numbered lines of `line_bytes` bytes on stdout as fast as it
    can (`<name> out <seq:010> xxx…`), then exits 0. No port: nothing waits for it."""
    name: str
    lines: int
    line_bytes: int
    tier: int = 0
    deps: list = field(default_factory=list)

    def command(self, binary, start_log, pid_dir):
        return [str(binary), "test-service", "--name", self.name,
                "--lines", str(self.lines), "--line-bytes", str(self.line_bytes),
                "--rate", "0", "--stream", "out", "--lines-exit",
                "--start-log", str(start_log),
                "--pid-file", str(pid_dir / f"{self.name}.pid")]


@dataclass
class Flood:
    """W5's services and the rotation every supervisor is asked for."""
    services: list
    lines: int                     # per service
    line_bytes: int                # newline included
    max_size: int                  # rotate before a file passes this many bytes
    backups: int                   # rotated files kept per log

    @property
    def tiers(self):
        return [self.services]

    @property
    def ports(self):
        return []

    @property
    def total_bytes(self):
        return len(self.services) * self.lines * self.line_bytes


def w5_flood():
    # 4 x 262,144 lines of 200 bytes = 4 x 50 MiB; 10 MiB rotation, 30 files kept.
    lines, line_bytes = 262_144, 200
    services = [Flooder(f"flood{i + 1}", lines, line_bytes) for i in range(4)]
    return Flood(services, lines, line_bytes, 10 * MIB, 30)
