"""C1 and C2: titan-supervisor's container services against docker-compose (bring-up through
health-gated `depends_on`) and dockerd's own `--restart always` (crash recovery), on a private
dockerd and registry (scripts/docker-env.sh) with the FROM-scratch test-service image pushed
and pinned by digest.

Every stack runs the same 16-service, 6-tier graph as W1 (bench/benchlib/topology.py), each
service a container of the test image listening on 8080 inside, published on 127.0.0.1:PORT.
Every container bind-mounts one host directory of its session at /cb and appends its
`start` and `ready` instants to /cb/start.log (container and host share the clock), so the
figures of W1 (ordering violations, dependency ready -> start) come out of C1 too. Health as
seen from outside is the first `GET /health` answered 200 on the published port (probe.py)."""

import calendar
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from . import probe
from .procs import (BenchError, check_ports_free, port_free, proc_age, proc_dead, proc_memory,
                    run_cmd, stop_popen, wait_quiet, wait_until)
from .topology import bring_up, read_start_log, tiered

PORTS_C1, PORTS_C2 = 25001, 25101
INNER_PORT = 8080
SHARE = "/cb"                       # where each container sees its session's share directory
TITAN_PROJECT, COMPOSE_PROJECT, POLICY_PREFIX, API_PREFIX = "cbt", "cbc", "cbd", "cba"
DOCKER_CLI = "/usr/bin/docker"     # Debian's 20.10 CLI (scripts/docker-env.sh uses the same)
C1_POLL_S = 0.010                   # outside /health poll per port during a bring-up
C2_POLL_S = 0.002                   # ... of the killed service's port
TITAN_MIN_UPTIME_S = 1.0            # min_uptime in titan's config: no backoff after this
SETTLE_S = 2.0                      # pause before each launch
DOCKER_RESET_S = 10.0               # dockerd resets its restart delay (100 ms) after this


def c1_graph():
    return tiered([3, 3, 3, 3, 2, 2], PORTS_C1, 200)


def c2_graph():
    # ready at once: C2 measures the restart path, not the readiness delay (as W2)
    return tiered([3, 3, 3, 3, 2, 2], PORTS_C2, 0)


def service_args(s):
    return ["--name", s.name, "--listen", f"0.0.0.0:{INNER_PORT}",
            "--ready-after", f"{s.ready_after_ms}ms", "--start-log", f"{SHARE}/start.log"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the private Docker environment ------------------------------------------------------------

class DockerEnv:
    """scripts/docker-env.sh start/images/stop under a short temp dir (/tmp/cb-XXXX: the
    daemon's socket paths must stay short); always stopped on leaving, whatever happened."""

    def __init__(self, repo, static_dir):
        self.repo, self.static_dir = Path(repo), Path(static_dir)
        self.script = self.repo / "scripts" / "docker-env.sh"
        self.dir = None
        self.vars = {}

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
        try:
            log(f"private dockerd and registry under {self.dir}")
            run_cmd([self.script, "start", self.dir], 120)
            run_cmd([self.script, "images", self.dir, self.static_dir], 600)
            for line in (self.dir / "env").read_text().splitlines():
                if line.startswith("export ") and "=" in line:
                    k, v = line[len("export "):].split("=", 1)
                    self.vars[k] = v
            self.image = self.vars["TITAN_TEST_IMAGE"]
            self.host = self.vars["DOCKER_HOST"]
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.dir is None:
            return
        try:
            run_cmd([self.script, "stop", self.dir], 180)
        except BenchError as e:
            log(f"docker-env.sh stop {self.dir}: {e}")
        self.dir = None

    @property
    def sock(self):
        """dockerd's socket path (the Engine API)."""
        return self.host.removeprefix("unix://")

    @property
    def env(self):
        return dict(os.environ, DOCKER_HOST=self.vars["DOCKER_HOST"],
                    DOCKER_CONFIG=self.vars["DOCKER_CONFIG"], DOCKER_BUILDKIT="0")

    def docker(self, *args, timeout=60):
        return run_cmd([DOCKER_CLI, *args], timeout, env=self.env)

    def versions(self):
        server = self.docker("version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})",
                             timeout=20).strip()
        compose = run_cmd(["docker-compose", "version"], 30, env=self.env)
        words = {line.split(" version")[0].strip(): line.split()[2].rstrip(",")
                 for line in compose.splitlines() if " version" in line and len(line.split()) > 2}
        return [f"dockerd {server}",
                f"docker-compose {words.get('docker-compose', '?')} "
                f"(docker-py {words.get('docker-py', '?')})"]

    def inspect(self, names, fmt):
        """{name: formatted} for the containers that exist (one CLI call)."""
        if not names:
            return {}
        done = subprocess.run([DOCKER_CLI, "inspect", "-f", "{{.Name}} " + fmt, *names],
                              env=self.env, capture_output=True, text=True, timeout=60)
        out = {}
        for line in done.stdout.splitlines():
            name, _, rest = line.partition(" ")
            out[name.lstrip("/")] = rest
        return out

    def remove(self, names, networks=()):
        """Removes containers (force) and networks, ignoring the ones that do not exist."""
        if names:
            subprocess.run([DOCKER_CLI, "rm", "-f", *names], env=self.env, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for net in networks:
            subprocess.run([DOCKER_CLI, "network", "rm", net], env=self.env, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the stacks --------------------------------------------------------------------------------

class Stack:
    """One way of running the graph's containers, in its own session directory."""

    def __init__(self, env, graph, sdir):
        self.env, self.graph, self.dir = env, graph, Path(sdir)
        self.share = self.dir / "share"
        self.share.mkdir(parents=True, exist_ok=True)
        self.start_log = self.share / "start.log"
        self.t0_ns = None
        self.notes = []

    def fresh_log(self):
        self.start_log.write_text("")

    def container(self, s):
        raise NotImplementedError

    def names(self):
        return [self.container(s) for s in self.graph.services]

    def host_pid(self, s):
        """The container's main process as the host sees it, or None when it does not run."""
        got = self.env.inspect([self.container(s)], "{{.State.Pid}}")
        pid = int(got.get(self.container(s), "0") or 0)
        return pid or None

    def wait_ports_free(self):
        wait_until("the published ports to be free",
                   lambda: all(port_free(p) for p in self.graph.ports), 30, 0.05)
        check_ports_free(self.graph.ports)

    def settle(self):
        """Before a launch: the ports free, and dockerd done with the last stop or removal
        (its network teardown and docker-proxy exits run on after the call returns)."""
        self.wait_ports_free()
        time.sleep(SETTLE_S)

    def alive(self):
        pass


class TitanStack(Stack):
    key, label = "titan", "titan-supervisor"

    def __init__(self, env, graph, sdir, binary):
        super().__init__(env, graph, sdir)
        self.binary = Path(binary)
        self.cfg = self.dir / "services.toml"
        self.sock = self.dir / "supervisor.sock"
        self.cfg.write_text(self.config())
        run_cmd([self.binary, "validate", self.cfg], 30)
        self.proc = None
        self.launches = 0

    def container(self, s):
        return f"{TITAN_PROJECT}-{s.name}"

    def config(self):
        q = json.dumps                    # a JSON string is a TOML basic string
        lines = [
            "[supervisor]", f"project = {q(TITAN_PROJECT)}", f"docker_host = {q(self.env.host)}",
            'state_dir = "state"', 'log_dir = "logs"', 'socket = "supervisor.sock"', "",
            "[groups]", "order = [" + ", ".join(q(f"t{i + 1}") for i in
                                               range(len(self.graph.tiers))) + "]", "",
            "[defaults]",
            'health = { interval = "1s", timeout = "500ms", start_interval = "5ms" }',
            'restart = "always"', f'min_uptime = "{TITAN_MIN_UPTIME_S:g}s"',
            'backoff = { initial = "0ms", max = "1s" }',
        ]
        for s in self.graph.services:
            lines += ["", f"[services.{q(s.name)}]", f'group = "t{s.tier + 1}"',
                      f"image = {q(self.env.image)}",
                      "args = [" + ", ".join(q(a) for a in service_args(s)) + "]",
                      f"ports = [{q(f'127.0.0.1:{s.port}:{INNER_PORT}')}]",
                      f"volumes = [{q(f'{self.share}:{SHARE}')}]",
                      f'health = {{ http = "http://127.0.0.1:{s.port}/health" }}']
        return "\n".join(lines) + "\n"

    def launch(self):
        self.launches += 1
        out = open(self.dir / f"titan-{self.launches}.log", "wb")
        try:
            self.t0_ns = time.time_ns()
            self.proc = subprocess.Popen([self.binary, "run", "--config", self.cfg], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"titan-supervisor exited {self.proc.returncode} (see "
                             f"{self.dir}/titan-{self.launches}.log)")

    def stop(self):
        """SIGTERM: titan stops the containers in reverse order and exits 0; they stay, stopped."""
        if self.proc is not None:
            code = stop_popen(self.proc, signal.SIGTERM, timeout=90)
            if code != 0:
                self.notes.append(f"titan-supervisor exited {code} on SIGTERM")
            self.proc = None

    def kill(self):
        """SIGKILL: the containers keep running."""
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        wait_until("titan-supervisor to die", lambda: proc_dead(pid), 10)
        self.proc = None

    def remove(self):
        self.env.remove(self.names(), [f"{TITAN_PROJECT}_default"])

    def close(self):
        try:
            self.stop()
        finally:
            self.remove()


class ComposeStack(Stack):
    key, label = "compose", "docker-compose"

    def __init__(self, env, graph, sdir, interval):
        super().__init__(env, graph, sdir)
        self.interval = interval
        self.file = self.dir / "docker-compose.yml"
        self.file.write_text(self.compose_file())
        self.up_proc = None
        self.ups = 0

    def container(self, s):
        return f"{COMPOSE_PROJECT}_{s.name}_1"

    def compose_file(self):
        """Compose file format 2.4 (JSON is YAML): `depends_on` with `condition:
        service_healthy`; the healthcheck runs the test service's own probe inside the image,
        which has no shell and no curl."""
        services = {}
        for s in self.graph.services:
            svc = {
                "image": self.env.image,
                "command": service_args(s),
                "ports": [f"127.0.0.1:{s.port}:{INNER_PORT}"],
                "volumes": [f"{self.share}:{SHARE}"],
                "healthcheck": {
                    "test": ["CMD", "/titan-testsvc", "--check-http",
                             f"http://127.0.0.1:{INNER_PORT}/health"],
                    "interval": self.interval, "timeout": "2s", "retries": 3,
                },
            }
            if s.deps:
                svc["depends_on"] = {d: {"condition": "service_healthy"} for d in s.deps}
            services[s.name] = svc
        return json.dumps({"version": "2.4", "services": services}, indent=1) + "\n"

    def compose(self, *args, timeout=180):
        return run_cmd(["docker-compose", "-p", COMPOSE_PROJECT, "-f", self.file, *args], timeout,
                       env=self.env.env, log=self.dir / "compose.log")

    def launch(self):
        """`docker-compose up -d`, in the background: it returns once the last tier is started
        (it waits for each dependency's health first)."""
        self.ups += 1
        out = open(self.dir / f"up-{self.ups}.log", "wb")
        try:
            self.t0_ns = time.time_ns()
            self.up_proc = subprocess.Popen(
                ["docker-compose", "-p", COMPOSE_PROJECT, "-f", self.file, "up", "-d",
                 "--no-color"], cwd=self.dir, env=self.env.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def alive(self):
        if self.up_proc is not None and self.up_proc.poll() not in (None, 0):
            raise BenchError(f"docker-compose up exited {self.up_proc.returncode} (see "
                             f"{self.dir}/up-{self.ups}.log)")

    def wait_up(self, timeout):
        """Waits for `up -d` to return; its exit time after t0, in seconds."""
        try:
            self.up_proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_popen(self.up_proc, signal.SIGTERM, timeout=10)
            raise BenchError(f"docker-compose up did not return within {timeout} s")
        self.alive()
        return (time.time_ns() - self.t0_ns) / 1e9

    def stop(self):
        self.compose("stop", "-t", "10")

    def remove(self):
        try:
            self.compose("down", "-t", "10", timeout=240)
        finally:
            self.env.remove(self.names(), [f"{COMPOSE_PROJECT}_default"])

    def close(self):
        if self.up_proc is not None and self.up_proc.poll() is None:
            stop_popen(self.up_proc, signal.SIGTERM, timeout=10)
        self.remove()


class RestartPolicyStack(Stack):
    """No supervisor: each container started by `docker run -d --restart always`, dockerd
    restarts it when it dies."""
    key, label = "docker", "dockerd `--restart always`"
    prefix = POLICY_PREFIX
    restart = "always"

    def container(self, s):
        return f"{self.prefix}-{s.name}"

    @property
    def network(self):
        return f"{self.prefix}_net"

    def launch(self):
        self.t0_ns = time.time_ns()
        self.env.docker("network", "create", self.network)
        for s in self.graph.services:
            self.env.docker("run", "-d", "--restart", self.restart, "--name", self.container(s),
                            "--network", self.network, "-p",
                            f"127.0.0.1:{s.port}:{INNER_PORT}", "-v", f"{self.share}:{SHARE}",
                            self.env.image, *service_args(s))

    def remove(self):
        self.env.remove(self.names(), [self.network])

    def close(self):
        self.remove()


class ApiRestartStack(RestartPolicyStack):
    """The floor of any supervisor outside dockerd: containers run with no restart policy, and
    one thread follows dockerd's events stream and asks for `POST /containers/ID/start` the
    moment a `die` arrives. Nothing else: no state machine, no health gate, no log stream."""
    key, label = "api", "dockerd alone, restarted through the Engine API on its `die` event"
    prefix = API_PREFIX
    restart = "no"

    def __init__(self, env, graph, sdir):
        super().__init__(env, graph, sdir)
        self.sock = env.sock
        self.events, self.watcher, self.failures = None, None, []

    def launch(self):
        super().launch()
        names = json.dumps({"type": ["container"], "event": ["die"],
                            "container": self.names()}, separators=(",", ":"))
        self.events = probe.UnixHTTPConnection(self.sock, None)
        self.events.request("GET", "/events?filters=" + urllib.parse.quote(names))
        stream = self.events.getresponse()
        self.watcher = threading.Thread(target=self._restart_on_die, args=(stream,), daemon=True)
        self.watcher.start()

    def _restart_on_die(self, stream):
        while True:
            try:
                line = stream.readline()
            except Exception:   # the stream closed under it (close()); http.client says so variously
                return
            if not line:
                return
            cid = json.loads(line).get("id", "")
            code, body = probe.unix_request(self.sock, "POST", f"/containers/{cid}/start")
            if code not in (204, 304):
                self.failures.append(f"start {cid[:12]}: {code} {body[:200]!r}")

    def alive(self):
        if self.failures:
            raise BenchError("; ".join(self.failures))

    def close(self):
        if self.events is not None:
            try:
                self.events.sock.shutdown(socket.SHUT_RDWR)   # wakes the watcher's readline
            except OSError:
                pass
            self.events.close()
            self.events = None
        super().close()


# --- measurements ------------------------------------------------------------------------------

class StartedPorts:
    """The published ports of the services whose process has logged its start (read again
    from the start log only when the file grew)."""

    def __init__(self, stack):
        self.stack, self.size, self.ports = stack, -1, []
        self.port_of = {s.name: s.port for s in stack.graph.services}

    def __call__(self):
        try:
            size = self.stack.start_log.stat().st_size
        except FileNotFoundError:
            return self.ports
        if size != self.size:
            self.size = size
            events = read_start_log(self.stack.start_log)
            self.ports = [p for n, p in self.port_of.items() if events.get(n, {}).get("start")]
        return self.ports


def wait_healthy(stack, timeout, interval=C1_POLL_S):
    """Polls the published port of every service whose process has started, until each
    answers /health 200: {service name: wall ns}."""
    poller = probe.HealthPoller(stack.graph.ports, interval=interval, armed=StartedPorts(stack))
    healthy = poller.run(timeout, stack.alive)
    by_port = {s.port: s.name for s in stack.graph.services}
    return {by_port[p]: wall for p, (wall, _) in healthy.items()}


def bringup_figures(stack, healthy_ns):
    """A bring-up's figures: outside health, and the start log's (as W1)."""
    t0 = stack.t0_ns
    wait_until("every service's ready line in the start log",
               lambda: all(read_start_log(stack.start_log).get(s.name, {}).get("ready")
                           for s in stack.graph.services), 10, 0.02)
    r = bring_up(stack.graph, stack.start_log, t0)
    tiers = [max(healthy_ns[s.name] for s in tier) for tier in stack.graph.tiers]
    return {"healthy_s": (max(healthy_ns.values()) - t0) / 1e9,
            "ready_s": r["bringup_s"], "first_start_s": r["first_start_s"],
            "violations": r["violations"], "gate_ms": r["gate_ms"],
            "restarts": r["restarts"],
            "tier_s": [(t - t0) / 1e9 for t in tiers]}


def titan_bringup(stack, timeout):
    stack.settle()
    stack.fresh_log()
    stack.launch()
    watch = probe.StatusWatch(stack.sock, len(stack.graph.services), interval=0.020,
                              timeout=timeout)
    watch.start()
    try:
        healthy = wait_healthy(stack, timeout)
        status_ns = watch.finish(5.0)
    finally:
        watch.finish(0)
    result = bringup_figures(stack, healthy)
    result["status_s"] = (status_ns - stack.t0_ns) / 1e9 if status_ns else None
    return result


def compose_bringup(stack, timeout):
    stack.settle()
    stack.fresh_log()
    stack.launch()
    healthy = wait_healthy(stack, timeout)
    up_s = stack.wait_up(timeout)
    result = bringup_figures(stack, healthy)
    result["up_returned_s"] = up_s
    return result


def kill_recover(stack, s, min_age, timeout=30.0):
    """SIGKILLs the container's main process from the host, once it has run over min_age and
    answers; returns ms from the kill to /health 200 on the published port, to the new
    container's `State.StartedAt`, and to the new process's start and ready lines."""
    def settled():
        stack.alive()
        pid = stack.host_pid(s)
        try:
            if pid and proc_age(pid) > min_age and probe.health_ok(s.port):
                return pid
        except (FileNotFoundError, ProcessLookupError):
            pass
        return None
    pid = wait_until(f"{s.name} up for over {min_age:g} s", settled, timeout + min_age, 0.05)
    age = proc_age(pid)
    wall = time.time_ns()
    t = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    # until every thread of the old process is gone its listener may still answer
    wait_until(f"{s.name} (pid {pid}) to die", lambda: proc_dead(pid), 5, 0.0005)
    poller = probe.HealthPoller([s.port], interval=C2_POLL_S, max_inflight=32)
    (_, back), = poller.run(timeout, stack.alive, f"{s.name} to answer again").values()
    healthy_ms = (back - t) * 1000
    started = stack.env.inspect([stack.container(s)], "{{.State.StartedAt}}")
    started_ns = _rfc3339_ns(started.get(stack.container(s), ""))
    events = read_start_log(stack.start_log).get(s.name, {"start": [], "ready": []})
    after = lambda kind: [ns for ns in events[kind] if ns > wall]
    return {"healthy_ms": healthy_ms,
            "started_ms": (started_ns - wall) / 1e6 if started_ns else None,
            "spawn_ms": (after("start")[0] - wall) / 1e6 if after("start") else None,
            "ready_ms": (after("ready")[0] - wall) / 1e6 if after("ready") else None,
            "age_s": age}


def _rfc3339_ns(text):
    """Docker's `2026-11-23T17:58:15.637784838Z` as Unix nanoseconds (None if unparsable)."""
    text = text.strip()
    if not text.endswith("Z") or "T" not in text:
        return None
    main, _, frac = text[:-1].partition(".")
    try:
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def kills(stack, count, min_age):
    """`count` kills rotating over the graph's services; the list of kill_recover results."""
    out = []
    for i in range(count):
        s = stack.graph.services[i % len(stack.graph.services)]
        out.append(kill_recover(stack, s, min_age))
    return out


def identities(stack):
    return stack.env.inspect(stack.names(), "{{.Id}} {{.State.StartedAt}}")


def adoption(stack, timeout=60.0):
    """SIGKILLs titan-supervisor with every container up, starts it again: seconds until its
    status shows every service healthy, and the containers that were restarted meanwhile."""
    before = identities(stack)
    stack.kill()
    stack.launch()
    count = len(stack.graph.services)

    def adopted():
        stack.alive()
        st = probe.titan_status(stack.sock)
        return st if probe.all_healthy_in(st, count) else None
    status = wait_until("titan-supervisor's status to show every service healthy", adopted,
                        timeout, 0.005)
    took = (time.time_ns() - stack.t0_ns) / 1e9
    after = identities(stack)
    restarted = sorted(n for n in before if after.get(n) != before[n])
    restarts = sum(s.get("restarts", 0) for s in status["services"])
    return {"adopt_s": took, "restarted": restarted, "restarts": restarts}


def rss(pid):
    r, pss, _ = proc_memory(pid)
    return {"rss_kib": r, "pss_kib": pss}


class FloorStack(RestartPolicyStack):
    """dockerd alone: N created containers started at once through the Engine API (one
    `POST /containers/NAME/start` each, from N threads), until the last one's process logs its
    start. A tier of N containers cannot be healthy sooner than that plus its readiness delay,
    whoever asks for the starts. Measured once per C1 round, beside the rows, so that it sees
    the same machine they do."""
    key, label, prefix = "floor", "dockerd alone", "cbf"
    SIZES = (1, 2, 3)

    def __init__(self, env, sdir):
        super().__init__(env, tiered([max(self.SIZES)], PORTS_C1 + 200, 0), sdir)
        self.sock = env.sock
        self.times = {n: [] for n in self.SIZES}

    def create(self):
        self.remove()
        self.env.docker("network", "create", self.network)
        for s in self.graph.services:
            self.env.docker("create", "--name", self.container(s), "--network", self.network,
                            "-p", f"127.0.0.1:{s.port}:{INNER_PORT}", "-v",
                            f"{self.share}:{SHARE}", self.env.image, *service_args(s))

    def measure(self, timeout=60.0):
        """One start of each size; appends to self.times (seconds)."""
        names = self.names()
        for n in self.SIZES:
            self.settle()
            self.fresh_log()
            errors = []

            def start(name):
                try:
                    code, body = probe.unix_request(self.sock, "POST",
                                                    f"/containers/{name}/start", timeout)
                    if code not in (204, 304):
                        errors.append(f"{name}: {code} {body[:200]!r}")
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{name}: {e}")

            def started():
                starts = [e["start"][0] for e in read_start_log(self.start_log).values()
                          if e["start"]]
                return starts if len(starts) >= n else None
            threads = [threading.Thread(target=start, args=(name,)) for name in names[:n]]
            t0 = time.time_ns()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout)
            if errors or any(t.is_alive() for t in threads):
                raise BenchError(f"docker start: {'; '.join(errors) or 'no answer'}")
            last = max(wait_until(f"{n} process start line(s)", started, 10))
            self.times[n].append((last - t0) / 1e9)
            self.env.docker("stop", "-t", "5", *names[:n], timeout=60)


def c1(env, binary, sdirs, reps, compose_intervals, timeout=120.0):
    """C1: cold and warm bring-ups, `reps` times each, titan then docker-compose per round."""
    graph = c1_graph()
    rows = [{"key": "titan", "label": "titan-supervisor", "start": st, "runs": [], "error": None,
             "notes": []} for st in ("cold", "warm")]
    for iv in compose_intervals:
        rows += [{"key": "compose", "label": f"docker-compose, healthcheck interval {iv}",
                  "interval": iv, "start": st, "runs": [], "error": None, "notes": []}
                 for st in ("cold", "warm")]
    stacks, floor = {}, FloorStack(env, sdirs("C1-floor"))
    try:
        try:
            floor.create()
        except BenchError as e:
            log(f"C1: dockerd's start floor not measured: {e}")
            floor.close()
            floor = None
        stacks["titan"] = TitanStack(env, graph, sdirs("C1-titan"), binary)
        for iv in compose_intervals:
            stacks[iv] = ComposeStack(env, graph, sdirs(f"C1-compose-{iv}"), iv)
        for rep in range(reps):
            if floor is not None:
                log(f"C1#{rep + 1}: dockerd alone, `docker start` of 1, 2, 3 containers at once")
                try:
                    floor.measure()
                    log("  " + ", ".join(f"{n}: {v[-1] * 1000:.0f} ms"
                                         for n, v in floor.times.items() if v))
                except BenchError as e:
                    log(f"  failed: {e}")
            for pair in _pairs(rows):
                key = "titan" if pair[0]["key"] == "titan" else pair[0]["interval"]
                _c1_pair(stacks[key], pair, rep, timeout)
    finally:
        for st in [f for f in (floor, *stacks.values()) if f is not None]:
            try:
                st.close()
            except BenchError as e:
                log(f"cleanup of {st.label}: {e}")
    for row in rows:
        st = stacks.get("titan" if row["key"] == "titan" else row.get("interval"))
        if st is not None:
            row["notes"] += [n for n in st.notes if n not in row["notes"]]
    result = {"reps": reps, "ideal_s": graph.ideal_s, "rows": rows,
              "dependents": sum(1 for s in graph.services if s.deps), "start_floor": None}
    if floor is not None and all(floor.times.values()):
        floor = result["start_floor"] = floor.times
        # every tier: its containers started at once, then its readiness delay
        result["floor_s"] = sum(statistics.median(floor[len(t)]) + t[0].ready_after_ms / 1000
                                for t in graph.tiers)
    return result


def _pairs(rows):
    return [rows[i:i + 2] for i in range(0, len(rows), 2)]


def _c1_pair(stack, pair, rep, timeout):
    """One cold bring-up (no container exists; the image is present), stop, one warm bring-up
    (the stopped containers exist), then everything removed."""
    cold, warm = pair
    measure = titan_bringup if stack.key == "titan" else compose_bringup
    try:
        stack.remove()
        for row in (cold, warm):
            if row["error"]:
                continue
            log(f"C1#{rep + 1}: {row['label']}, {row['start']}")
            try:
                result = measure(stack, timeout)
            except BenchError as e:
                log(f"  failed: {e}")
                row["error"] = str(e)
                break
            row["runs"].append(result)
            extra = f", status {result['status_s']:.3f} s" if result.get("status_s") else ""
            log(f"  all healthy {result['healthy_s']:.3f} s (last ready {result['ready_s']:.3f} s"
                f"{extra}), violations {result['violations']}")
            stack.stop()
    finally:
        if stack.key == "titan":
            stack.stop()
        stack.remove()


def c2(env, binary, sdirs, kill_count, adopt_reps, timeout=120.0):
    """C2: kills under titan-supervisor (then adoption and RSS), and under dockerd's restart
    policy."""
    graph = c2_graph()
    out = {"kills": kill_count, "rows": [], "adoption": None, "rss": None, "notes": []}
    titan = {"key": "titan", "label": "titan-supervisor (`restart = \"always\"`, min_uptime 1 s, "
             "backoff 0 ms)", "kills": [], "error": None, "notes": [],
             "min_age_s": TITAN_MIN_UPTIME_S}
    policy = {"key": "docker", "label": "dockerd `--restart always` (no supervisor)",
              "kills": [], "error": None, "notes": [], "min_age_s": DOCKER_RESET_S}
    floor = {"key": "api", "label": ApiRestartStack.label, "kills": [], "error": None,
             "notes": [], "min_age_s": TITAN_MIN_UPTIME_S}
    out["rows"] = [titan, floor, policy]
    adopt = {"runs": [], "error": None}
    mem = {"error": None}
    out["adoption"], out["rss"] = adopt, mem

    stack = TitanStack(env, graph, sdirs("C2-titan"), binary)
    try:
        stack.remove()
        stack.wait_ports_free()
        _quiet()
        stack.fresh_log()
        stack.launch()
        log("C2: titan-supervisor, 16 containers up")
        wait_healthy(stack, timeout)
        time.sleep(2.0)            # past the bring-up burst
        mem["settled"] = rss(stack.proc.pid)
        log(f"  VmRSS settled {mem['settled']['rss_kib']} KiB; {kill_count} kills")
        try:
            titan["kills"] = kills(stack, kill_count, TITAN_MIN_UPTIME_S)
            _log_kills(titan["kills"])
        except BenchError as e:
            log(f"  failed: {e}")
            titan["error"] = str(e)
        time.sleep(2.0)
        mem["after_kills"] = rss(stack.proc.pid)
        st = probe.titan_status(stack.sock)
        if st:
            titan["restarts_seen"] = sum(s.get("restarts", 0) for s in st["services"])
        for rep in range(adopt_reps):
            log(f"C2 adoption #{rep + 1}: SIGKILL titan-supervisor, start it again")
            try:
                r = adoption(stack, timeout)
            except BenchError as e:
                log(f"  failed: {e}")
                adopt["error"] = str(e)
                break
            adopt["runs"].append(r)
            log(f"  all healthy in its status after {r['adopt_s']:.3f} s, restarted "
                f"{len(r['restarted'])}, restarts {r['restarts']}")
            time.sleep(2.0)
            mem.setdefault("after_adoption", []).append(rss(stack.proc.pid))
        check = run_cmd([binary, "status", "--json", "--socket", stack.sock], 30)
        states = [s["state"] for s in json.loads(check)["services"]]
        out["status_check"] = f"{states.count('healthy')} of {len(states)} healthy"
    except BenchError as e:
        log(f"  failed: {e}")
        for r in (titan, adopt, mem):
            if not r.get("error"):
                r["error"] = str(e)
    finally:
        try:
            stack.close()
        except BenchError as e:
            log(f"cleanup of titan-supervisor: {e}")
        titan["notes"] += stack.notes

    for row, peer in ((floor, ApiRestartStack(env, graph, sdirs("C2-api"))),
                      (policy, RestartPolicyStack(env, graph, sdirs("C2-docker")))):
        _c2_peer(peer, row, kill_count, timeout)
    return out


def _c2_peer(peer, row, kill_count, timeout):
    """The kills under a stack with no titan-supervisor."""
    try:
        peer.remove()
        peer.wait_ports_free()
        _quiet()
        peer.fresh_log()
        log(f"C2: {peer.label}, 16 containers up")
        peer.launch()
        wait_healthy(peer, timeout)
        row["kills"] = kills(peer, kill_count, row["min_age_s"])
        _log_kills(row["kills"])
    except BenchError as e:
        log(f"  failed: {e}")
        row["error"] = str(e)
    finally:
        peer.close()


def _quiet():
    """Before each C2 stack: the machine idle again (C1's exec-heavy compose rows and
    dockerd's removals otherwise still load the first stack's kills)."""
    busy = wait_quiet()
    log(f"  machine {busy:.0%} busy before the launch")


def _log_kills(results):
    ms = sorted(r["healthy_ms"] for r in results)
    if ms:
        log(f"  kill -> /health 200: median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms")


def static_dir(target_dir):
    return Path(target_dir) / "x86_64-unknown-linux-gnu" / "static"


def build_static(repo):
    """The statically linked binaries for the test image, as scripts/test.sh builds them."""
    log("static build for the test image (cargo build --profile static)")
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--profile", "static", "--target",
                    "x86_64-unknown-linux-gnu", "--bin", "titan-testsvc", "--bin",
                    "titan-supervisor"], cwd=repo, env=env, check=True, timeout=1800)


def missing_tools():
    """What the container workloads need and this machine lacks (bench/setup.sh installs it)."""
    need = {"dockerd": "docker.io", "docker-registry": "docker-registry",
            "docker-compose": "docker-compose"}
    gone = [pkg for cmd, pkg in need.items() if shutil.which(cmd) is None]
    if not Path(DOCKER_CLI).exists():
        gone.append("docker.io")
    return sorted(set(gone))
