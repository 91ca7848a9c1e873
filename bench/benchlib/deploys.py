"""N-switch, C2-switch, C3-rollback: `titan-supervisor switch` on a host laid out as
tests/deploy.rs lays one out (`releases/<id>/` with services.toml, digests.json and
release.json, a `current` symlink, the daemon run from `<current>/services.toml` through a
`services.toml` symlink), against the seeds' way of shipping the same change: PM2 reloading
the changed apps (native), `docker-compose up -d` with the new digests (containers).

The graph is W1's: 16 services in 6 tiers (3, 3, 3, 3, 2, 2), each depending on every service
of the previous tier, ready 200 ms after its own start, gated by its /health. Release A runs
every service with `--policy-hash pa`; release B changes three services in three successive
tiers (s04, s07, s10: the first of tiers 2, 3 and 4): `--policy-hash pb` natively, a variant
image (the test image plus a LABEL, its own digest) for containers. A switch A -> B is one
repetition, B -> A the next; every switch must end `verified`.

Everything is measured from outside: the CLI's wall time (launch -> exit, which follows the
outcome line), the progress lines it passes through with `--json` (each step's `ms`, and when
each line arrived), `titan-supervisor status --json` before and after (pids, restarts), the
services' own start log (which processes started anew, when they were ready), `GET /policy`
on the changed services (the new definition answers), and for containers `.Id` and
`.State.StartedAt`."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from . import containers as ct
from . import probe
from .procs import BenchError, run_cmd, stop_popen, wait_until
from .supervisors import PM2Session, Session
from .topology import Graph, Service, read_start_log, tiered

PORTS_NSWITCH, PORTS_ROLLBACK, PORTS_CSWITCH = 23301, 23401, 25301
READY_MS = 200
SIZES = [3, 3, 3, 3, 2, 2]
CHANGED = ("s04", "s07", "s10")        # the first service of tiers 2, 3 and 4
HASH_A, HASH_B = "pa", "pb"
PARITY = ("s01", "s10")                # C3: an unchanged service against a changed one
NATIVE_PROJECT, CONTAINER_PROJECT = "bsw", "cbs"
PROBATION = "1s"
SWITCH_TIMEOUT_S = 90.0
POLL_S = 0.010                         # PM2's scripted poll of the changed services
COMPOSE_INTERVAL = "100ms"             # the compose peer's healthcheck interval (C1's faster row)

# the targets are held in report.py (N-switch 3 x readiness + 100 ms, C2-switch 3 s, C3
# the changed services' readiness + 2 s)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class HashedService(Service):
    """A W1 service that also reports a policy hash on GET /policy."""
    policy_hash: str = HASH_A

    def command(self, binary, start_log, pid_dir):
        return super().command(binary, start_log, pid_dir) + ["--policy-hash", self.policy_hash]


def release_graph(first_port, changed_hash):
    """W1's graph with CHANGED reporting `changed_hash`, every other service HASH_A."""
    base = tiered(SIZES, first_port, READY_MS)
    by_name = {}
    for s in base.services:
        values = {f.name: getattr(s, f.name) for f in fields(Service)}
        by_name[s.name] = HashedService(**values, policy_hash=changed_hash if s.name in CHANGED
                                        else HASH_A)
    tiers = [[by_name[s.name] for s in tier] for tier in base.tiers]
    return Graph([by_name[s.name] for s in base.services], tiers, explicit=False,
                 ready_after_ms=READY_MS)


def q(s):
    return json.dumps(str(s))          # a JSON string is a TOML basic string


def release_id(n):
    """`<YYYYMMDDTHHMMSSZ>-<sha7>` as `release create` names them, one per n."""
    return f"20261202T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}Z-{n:07x}"


def policy_of(port, timeout=0.5):
    """GET /policy on 127.0.0.1:port: its policy_hash, or None when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /policy HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if head.split(b"\r\n", 1)[0].split()[1:2] != [b"200"]:
            return None
        return json.loads(body).get("policy_hash")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# --- the host's releases -----------------------------------------------------------------------

class Releases:
    """`releases/`, `current` and the daemon's `services.toml` symlink of one session
    directory, the releases written into it, and the CLI against its daemon."""

    def __init__(self, sdir, binary, project, extra=()):
        self.dir, self.binary, self.project = Path(sdir), Path(binary), project
        self.root, self.current = self.dir / "releases", self.dir / "current"
        self.cfg, self.sock = self.dir / "services.toml", self.dir / "supervisor.sock"
        self.extra = list(extra)
        self.count = 0
        self.root.mkdir(parents=True, exist_ok=True)

    def header(self):
        """`[supervisor]` (absolute paths: a release's directory is not the daemon's, and
        socket, state_dir, log_dir, project may not change in a switch) and `[deploy]`."""
        d = self.dir
        return [
            "[supervisor]", f"project = {q(self.project)}", *self.extra,
            f"socket = {q(d / 'supervisor.sock')}", f"state_dir = {q(d / 'state')}",
            f"log_dir = {q(d / 'logs')}", f"releases_dir = {q(self.root)}",
            f"current = {q(self.current)}", "",
            "[deploy]", 'verify_timeout = "30s"', f"probation = {q(PROBATION)}",
            "keep_releases = 100", "",
        ]

    def write(self, body, digests):
        """A new release directory with `body` after the header; its id."""
        self.count += 1
        rid = release_id(self.count)
        at = self.root / rid
        at.mkdir()
        (at / "services.toml").write_text("\n".join(self.header() + body) + "\n")
        (at / "digests.json").write_text(json.dumps(digests, indent=1) + "\n")
        (at / "release.json").write_text(json.dumps(
            {"id": rid, "sha": f"{self.count:07x}", "created": "2026-12-02T00:00:00Z"}) + "\n")
        run_cmd([self.binary, "validate", at / "services.toml"], 30)
        return rid

    def install(self, rid):
        """The first release: `current` -> it, the daemon's config a symlink into `current`."""
        self.current.symlink_to(Path("releases") / rid)
        self.cfg.symlink_to(self.current / "services.toml")

    def current_id(self):
        return os.readlink(self.current).rsplit("/", 1)[-1]

    def switch(self, rid, timeout=SWITCH_TIMEOUT_S):
        """`titan-supervisor switch --json RID`: its wall time and exit code, every progress
        line with the moment it arrived (ms after the launch), the outcome."""
        out = {"release": rid, "steps": [], "outcome": None, "lines": []}
        t0 = time.perf_counter()
        out["t0_ns"] = time.time_ns()
        proc = subprocess.Popen([self.binary, "switch", "--json", "--socket", self.sock, rid],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        deadline = t0 + timeout
        # the CLI killed at the deadline, whether or not it is writing lines
        watchdog = threading.Timer(timeout, lambda: proc.poll() is None and proc.kill())
        watchdog.start()
        try:
            for raw in proc.stdout:          # one line as soon as the CLI writes it
                at = (time.perf_counter() - t0) * 1000
                try:
                    v = json.loads(raw)
                except ValueError:
                    out["lines"].append(raw.decode(errors="replace").rstrip())
                    continue
                if "outcome" in v:
                    out["outcome"], out["outcome_at_ms"] = v["outcome"], at
                    out["reason"] = v.get("reason")
                elif "ms" in v:
                    out["steps"].append({"step": v["step"], "ms": v["ms"], "result": v["result"],
                                         "detail": v.get("detail"), "at_ms": at,
                                         "started": v.get("started")})
            code = proc.wait(max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            raise BenchError(f"switch {rid} did not exit within {timeout:g} s")
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                stop_popen(proc, signal.SIGKILL, 5)
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stdout.close()
            proc.stderr.close()
        out["wall_ms"] = (time.perf_counter() - t0) * 1000
        out["code"] = code
        if out["wall_ms"] >= timeout * 1000:
            raise BenchError(f"switch {rid} took over {timeout:g} s (killed)")
        if err:
            out["lines"].append(err)
        return out

    def status(self):
        """`titan-supervisor status --json`: {service: its entry}."""
        text = run_cmd([self.binary, "status", "--json", "--socket", self.sock], 30)
        return {s["name"]: s for s in json.loads(text)["services"]}

    def lkg(self):
        try:
            return (self.dir / "state" / "last_known_good.json").read_text()
        except FileNotFoundError:
            return ""

    def wait_probation(self, rid, timeout=15.0):
        """Until the verified release's probation has passed (it is the last known good):
        every repetition starts from a settled host."""
        wait_until(f"{rid} to pass its probation", lambda: rid in self.lkg(), timeout, 0.05)


def steps_of(sw):
    return {s["step"]: s for s in sw["steps"]}


def gaps(sw):
    """The CLI's wall time outside the steps, from when each progress line arrived (ms):
    `head` launch -> the first step began (the CLI's start, its connect, the request);
    `between` the time between one step's line and the next step's start, summed (the
    journal written before the swap, the BAD mark before a rollback); `tail` the last step's
    line -> the outcome line (evidence and history written); `exit` the outcome line -> the
    CLI's exit. A step's `ms` is whole milliseconds, so `between` carries up to 1 ms of
    rounding per step."""
    steps = sw["steps"]
    if not steps or sw.get("outcome_at_ms") is None:
        return {}
    between = sum(max(0.0, b["at_ms"] - b["ms"] - a["at_ms"]) for a, b in zip(steps, steps[1:]))
    return {"head": steps[0]["at_ms"] - steps[0]["ms"], "between": between,
            "tail": sw["outcome_at_ms"] - steps[-1]["at_ms"],
            "exit": sw["wall_ms"] - sw["outcome_at_ms"]}


def expect_verified(sw):
    if sw["outcome"] != "verified" or sw["code"] != 0:
        tail = "; ".join(f"{s['step']} {s['result']} {s['detail'] or ''}".strip()
                         for s in sw["steps"] if s["result"] != "ok")
        raise BenchError(f"switch {sw['release']}: {sw['outcome']} (exit {sw['code']}): "
                         f"{sw.get('reason') or tail or ' | '.join(sw['lines'][-3:])}")


def changes(before, after, changed):
    """Per status: unchanged services whose pid or restarts changed, changed ones that got
    a new pid."""
    unchanged = [n for n in before if n not in changed]
    return {
        "restarts_unchanged": sum(after[n].get("restarts", 0) - before[n].get("restarts", 0)
                                  for n in unchanged),
        "pids_unchanged": sorted(n for n in unchanged if after[n].get("pid") != before[n].get("pid")),
        "recreated": sorted(n for n in changed if after[n].get("pid") != before[n].get("pid")),
        "healthy": sum(1 for s in after.values() if s.get("state") == "healthy"),
    }


def start_log_figures(graph, path, t0_ns, changed):
    """What the services' own start log says about one switch: the services that started
    after t0, ms from t0 to the last `ready` of a changed one, and the changed services that
    started before a changed dependency was ready again."""
    events = read_start_log(path)
    new_start = {n: [ns for ns in e["start"] if ns > t0_ns] for n, e in events.items()}
    new_ready = {n: [ns for ns in e["ready"] if ns > t0_ns] for n, e in events.items()}
    started = sorted(n for n, v in new_start.items() if v)
    readies = [new_ready[n][0] for n in changed if new_ready.get(n)]
    by_name = {s.name: s for s in graph.services}
    violations, pairs, gates, up = 0, 0, [], []
    for n in changed:
        if new_start.get(n) and new_ready.get(n):
            up.append((new_ready[n][0] - new_start[n][0]) / 1e6)
        for d in by_name[n].deps:
            if d in changed:
                pairs += 1
                if new_start.get(n) and new_ready.get(d):
                    gates.append((new_start[n][0] - new_ready[d][0]) / 1e6)
                    if new_start[n][0] < new_ready[d][0]:
                        violations += 1
    first = [new_start[n][0] for n in changed if new_start.get(n)]
    return {"started_anew": started,
            "ready_ms": (max(readies) - t0_ns) / 1e6 if len(readies) == len(changed) else None,
            # t0 -> the first changed service's new process (the old ones stopped before)
            "first_start_ms": (min(first) - t0_ns) / 1e6 if first else None,
            # a changed dependency ready again -> its changed dependent's new process
            "gate_ms": gates,
            # a new process's start -> its ready (the readiness delay plus spawn)
            "start_ready_ms": up,
            "violations": violations, "dependent_pairs": pairs}


# --- native: titan-supervisor ------------------------------------------------------------------

class NativeHost(Session):
    """titan-supervisor's daemon on a host with releases, native services; a Session (its
    cleanup: SIGTERM, sweep of the session directory, ports free)."""

    def __init__(self, sup, graph, sdir):
        super().__init__(sup, graph, sdir, "native")
        self.rel = Releases(self.dir, sup.binary, NATIVE_PROJECT)
        self.service_binary = sup.service_binary

    def body(self, graph, parity):
        lines = [
            "[groups]", "order = [" + ", ".join(q(f"t{i + 1}") for i in range(len(graph.tiers)))
            + "]", "",
            "[defaults]",
            'health = { interval = "1s", timeout = "500ms", start_interval = "5ms" }',
            'restart = "always"', 'min_uptime = "1s"', 'backoff = { initial = "0ms", max = "1s" }',
        ]
        for s in graph.services:
            cmd = s.command(self.service_binary, self.start_log, self.pid_dir)
            lines += ["", f"[services.{q(s.name)}]", f'group = "t{s.tier + 1}"',
                      "command = [" + ", ".join(q(c) for c in cmd) + "]",
                      f'health = {{ http = "http://127.0.0.1:{s.port}/health" }}']
        if parity:
            a, b = (next(s for s in graph.services if s.name == n) for n in PARITY)
            lines += ["", "[[verify.parity]]", 'name = "policy_hash"',
                      f'a = {{ http = "http://127.0.0.1:{a.port}/policy", field = "policy_hash" }}',
                      f'b = {{ http = "http://127.0.0.1:{b.port}/policy", field = "policy_hash" }}']
        return lines

    def write(self, graph, parity=False):
        return self.rel.write(self.body(graph, parity), {})

    def launch(self):
        self.t0_ns = time.time_ns()
        self.proc = self.popen([self.sup.binary, "run", "--config", self.rel.cfg], "titan")

    def alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"titan-supervisor exited {self.proc.returncode} (see "
                             f"{self.dir}/titan.out)")

    def wait_all_healthy(self, timeout=60.0):
        def up():
            self.alive()
            st = probe.titan_status(self.rel.sock)
            return probe.all_healthy_in(st, len(self.graph.services))
        wait_until("every service healthy in titan-supervisor's status", up, timeout, 0.02)


def _switch_rep(host, rid, graph, changed, want_hash):
    """One verified switch to rid: its figures."""
    before = host.rel.status()
    sw = host.rel.switch(rid)
    expect_verified(sw)
    after = host.rel.status()
    r = {"wall_ms": sw["wall_ms"], "outcome_at_ms": sw.get("outcome_at_ms"),
         "steps": {s["step"]: s["ms"] for s in sw["steps"]},
         "steps_at": {s["step"]: s["at_ms"] for s in sw["steps"]}, "gaps": gaps(sw)}
    r.update(changes(before, after, changed))
    r.update(start_log_figures(graph, host.start_log, sw["t0_ns"], changed))
    policies = {n: policy_of(s.port) for s in graph.services for n in [s.name] if n in changed}
    r["new_definition"] = sum(1 for v in policies.values() if v == want_hash)
    return r


def _log_switch(r):
    steps = ", ".join(f"{k} {v}" for k, v in r["steps"].items() if v)
    steps += "; outside the steps " + ", ".join(f"{k} {v:.0f}" for k, v in r["gaps"].items())
    log(f"  wall {r['wall_ms']:.0f} ms (changed ready {r['ready_ms'] or 0:.0f} ms; {steps}); "
        f"unchanged restarts {r['restarts_unchanged']}, pids changed "
        f"{len(r['pids_unchanged'])}; started anew {','.join(r['started_anew'])}")


def nswitch_titan(titan, sdir, reps):
    """N-switch, titan-supervisor: A, then `reps` switches alternating B, A, B, ..."""
    ga, gb = release_graph(PORTS_NSWITCH, HASH_A), release_graph(PORTS_NSWITCH, HASH_B)
    row = {"key": "titan", "label": "titan-supervisor `switch` (recreates what changed, "
           "verifies)", "runs": [], "error": None, "notes": []}
    try:
        with NativeHost(titan, ga, sdir) as host:
            ids = {"A": host.write(ga), "B": host.write(gb)}
            host.rel.install(ids["A"])
            host.launch()
            host.wait_all_healthy()
            time.sleep(1.0)
            for rep in range(reps):
                to = "B" if rep % 2 == 0 else "A"
                log(f"N-switch#{rep + 1}: titan-supervisor switch {'A' if to == 'B' else 'B'} "
                    f"-> {to}")
                r = _switch_rep(host, ids[to], ga, CHANGED, HASH_B if to == "B" else HASH_A)
                r["to"] = to
                _log_switch(r)
                row["runs"].append(r)
                host.rel.wait_probation(ids[to])
                time.sleep(0.5)
        row["notes"] += host.notes
    except BenchError as e:
        log(f"  failed: {e}")
        row["error"] = str(e)
    return row


# --- native: PM2 -------------------------------------------------------------------------------

def _pm2_jlist(sess):
    """{app: (pid, restart_time)} from `pm2 jlist`."""
    done = subprocess.run([sess.sup.pm2, "jlist"], env=sess.env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BenchError(f"pm2 jlist exited {done.returncode}: {done.stderr.strip()[-200:]}")
    text = done.stdout
    apps = json.loads(text[text.index("["):])
    return {a["name"]: (a.get("pid"), a["pm2_env"].get("restart_time", 0)) for a in apps}


def _wait_policy(ports, want, timeout, what):
    """Polls GET /policy on every port every POLL_S until each answers `want`."""
    waiting = set(ports)

    def done():
        waiting.difference_update([p for p in list(waiting) if policy_of(p, 0.2) == want])
        return not waiting
    wait_until(what, done, timeout, POLL_S)


def nswitch_pm2(pm2, sdir, reps, gated):
    """N-switch, PM2: the 16 apps of release A from one ecosystem file, then `reps` times the
    3 changed apps reloaded from release B's (then A's) ecosystem file, polling their
    GET /policy until each answers the new hash; `gated`: one tier's app at a time, as the
    seeds' deploy scripts went tier by tier, else all three in one `pm2 reload`."""
    ga, gb = release_graph(PORTS_NSWITCH, HASH_A), release_graph(PORTS_NSWITCH, HASH_B)
    label = ("PM2 — scripted gate: `pm2 reload ecosystem --only sNN` per tier, poll its "
             "/policy, next" if gated else
             "PM2 — `pm2 reload ecosystem --only s04,s07,s10`, poll their /policy")
    row = {"key": "pm2-gate" if gated else "pm2", "label": label, "runs": [], "error": None,
           "notes": []}
    by_name = {s.name: s for s in ga.services}
    try:
        with PM2Session(pm2, ga, sdir, "native") as sess:
            files = {"A": sess.files[0], "B": sess.dir / "release-B.config.js"}
            files["B"].write_text(pm2.ecosystem(gb.services, sess))
            sess.launch()
            wait_until("all 16 apps answering /policy",
                       lambda: all(policy_of(s.port, 0.2) == HASH_A for s in ga.services), 30,
                       0.05)
            time.sleep(1.0)
            for rep in range(reps):
                to = "B" if rep % 2 == 0 else "A"
                want = HASH_B if to == "B" else HASH_A
                log(f"N-switch#{rep + 1}: {label} -> {to}")
                before = _pm2_jlist(sess)
                t0_ns, t0 = time.time_ns(), time.perf_counter()
                if gated:
                    for name in CHANGED:
                        sess.pm2("reload", files[to], "--only", name)
                        _wait_policy([by_name[name].port], want, 30, f"{name} to answer {want}")
                else:
                    sess.pm2("reload", files[to], "--only", ",".join(CHANGED))
                    _wait_policy([by_name[n].port for n in CHANGED], want, 30,
                                 f"{', '.join(CHANGED)} to answer {want}")
                wall_ms = (time.perf_counter() - t0) * 1000
                after = _pm2_jlist(sess)
                unchanged = [n for n in before if n not in CHANGED]
                r = {"to": to, "wall_ms": wall_ms,
                     "restarts_unchanged": sum(after[n][1] - before[n][1] for n in unchanged),
                     "pids_unchanged": sorted(n for n in unchanged if after[n][0] != before[n][0]),
                     "recreated": sorted(n for n in CHANGED if after[n][0] != before[n][0]),
                     "new_definition": len(CHANGED)}
                r.update(start_log_figures(ga, sess.start_log, t0_ns, CHANGED))
                log(f"  {wall_ms:.0f} ms (changed ready {r['ready_ms'] or 0:.0f} ms), unchanged "
                    f"restarts {r['restarts_unchanged']}, violations {r['violations']}")
                row["runs"].append(r)
                time.sleep(1.0)
        row["notes"] += sess.notes
    except BenchError as e:
        log(f"  failed: {e}")
        row["error"] = str(e)
    return row


def nswitch(titan, pm2, sdirs, reps):
    rows = [nswitch_titan(titan, sdirs("N-switch-titan"), reps)]
    if pm2 is None or pm2.unavailable():
        why = pm2.unavailable() if pm2 is not None else "pm2 not among --supervisors"
        rows.append({"key": "pm2", "label": "PM2", "runs": [], "error": None, "notes": [],
                     "skipped": why})
    else:
        rows.append(nswitch_pm2(pm2, sdirs("N-switch-pm2"), reps, gated=False))
        rows.append(nswitch_pm2(pm2, sdirs("N-switch-pm2-gate"), reps, gated=True))
    return {"reps": reps, "rows": rows, "changed": list(CHANGED), "ready_ms": READY_MS}


# --- C3: a release whose verification fails ----------------------------------------------------

def rollback(titan, sdir, reps):
    """C3: release A (with a [[verify.parity]] of s01's and s10's /policy, equal), then `reps`
    times a fresh release B whose s04, s07, s10 report another hash: the parity fails at
    verify, B is marked BAD and titan-supervisor switches back to A and verifies it."""
    ga, gb = release_graph(PORTS_ROLLBACK, HASH_A), release_graph(PORTS_ROLLBACK, HASH_B)
    out = {"reps": reps, "runs": [], "error": None, "notes": [], "changed": list(CHANGED),
           "ready_ms": READY_MS, "parity": list(PARITY)}
    try:
        with NativeHost(titan, ga, sdir) as host:
            a = host.write(ga, parity=True)
            host.rel.install(a)
            host.launch()
            host.wait_all_healthy()
            time.sleep(1.0)
            for rep in range(reps):
                b = host.write(gb, parity=True)
                log(f"C3-rollback#{rep + 1}: switch {b} (parity fails), back to A")
                before = host.rel.status()
                sw = host.rel.switch(b)
                after = host.rel.status()
                if sw["outcome"] != "rolled_back":
                    raise BenchError(f"switch {b}: outcome {sw['outcome']} (exit {sw['code']}), "
                                     f"not rolled_back: {sw.get('reason')}")
                st = steps_of(sw)
                missing = [k for k in ("verify", "rollback swap", "rollback apply",
                                       "rollback verify") if k not in st]
                if missing or st["verify"]["result"] != "failed":
                    raise BenchError(f"switch {b}: steps {[s['step'] for s in sw['steps']]}")
                back = ("rollback swap", "rollback apply", "rollback verify")
                r = {"wall_ms": sw["wall_ms"], "code": sw["code"],
                     "steps": {s["step"]: s["ms"] for s in sw["steps"]},
                     "steps_sum_ms": sum(st[k]["ms"] for k in back),
                     # the verify line's arrival (its failure) -> the rollback verify line's
                     # arrival, and -> the CLI's exit
                     "wall_back_ms": st["rollback verify"]["at_ms"] - st["verify"]["at_ms"],
                     "wall_exit_ms": sw["wall_ms"] - st["verify"]["at_ms"],
                     "rollback_verify": st["rollback verify"]["result"],
                     "reason": sw.get("reason"), "gaps": gaps(sw),
                     "current_back": host.rel.current_id() == a,
                     "bad": (host.rel.root / b / "BAD").exists()}
                r.update(changes(before, after, CHANGED))
                r.update(start_log_figures(ga, host.start_log, sw["t0_ns"], CHANGED))
                # the way back alone: from the moment the failed verify line arrived
                failed_ns = sw["t0_ns"] + int(st["verify"]["at_ms"] * 1e6)
                r["back"] = start_log_figures(ga, host.start_log, failed_ns, CHANGED)
                r["old_definition"] = sum(1 for s in ga.services if s.name in CHANGED
                                          and policy_of(s.port) == HASH_A)
                log(f"  rolled back: rollback steps {r['steps_sum_ms']} ms (swap "
                    f"{r['steps']['rollback swap']}, apply {r['steps']['rollback apply']}, "
                    f"verify {r['steps']['rollback verify']}); verify failed -> rollback "
                    f"verified {r['wall_back_ms']:.0f} ms (-> CLI exit {r['wall_exit_ms']:.0f} "
                    f"ms); whole switch {r['wall_ms']:.0f} ms; verify {r['steps']['verify']} ms, "
                    f"apply {r['steps']['apply']} ms; unchanged restarts {r['restarts_unchanged']}")
                out["runs"].append(r)
                time.sleep(1.0)
        out["notes"] += host.notes
    except BenchError as e:
        log(f"  failed: {e}")
        out["error"] = str(e)
    return out


# --- C2-switch: containers ---------------------------------------------------------------------

def cswitch_graph():
    return tiered(SIZES, PORTS_CSWITCH, READY_MS)


def variant_image(env, variant):
    """The test image plus `LABEL titan.variant=<variant>`, pushed: its pinned reference
    (as tests/common/docker.rs `variant_image` builds one)."""
    registry = env.vars["TITAN_TEST_REGISTRY"]
    ref = f"{registry}/titan-testsvc:{variant}"
    dockerfile = f"FROM {env.image}\nLABEL titan.variant={variant}\n"
    done = subprocess.run([ct.DOCKER_CLI, "build", "-q", "-t", ref, "-"], input=dockerfile,
                          env=env.env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"docker build {ref}: {done.stderr.strip()[-300:]}")
    pushed = env.docker("push", ref, timeout=120).split()
    if "digest:" not in pushed:
        raise BenchError(f"no digest in the output of docker push {ref}")
    return f"{registry}/titan-testsvc@{pushed[pushed.index('digest:') + 1]}"


class ContainerHost(ct.TitanStack):
    """titan-supervisor on a host with releases whose services are containers of the test
    image (each release's images given per service)."""

    def __init__(self, env, graph, sdir, binary):
        ct.Stack.__init__(self, env, graph, sdir)
        self.binary = Path(binary)
        self.rel = Releases(self.dir, binary, CONTAINER_PROJECT,
                            [f"docker_host = {q(env.host)}"])
        self.cfg, self.sock = self.rel.cfg, self.rel.sock
        self.proc, self.launches = None, 0

    def container(self, s):
        return f"{CONTAINER_PROJECT}-{s.name}"

    def remove(self):
        self.env.remove(self.names(), [f"{CONTAINER_PROJECT}_default"])

    def write(self, images):
        lines = [
            "[groups]", "order = [" + ", ".join(q(f"t{i + 1}") for i in
                                               range(len(self.graph.tiers))) + "]", "",
            "[defaults]",
            'health = { interval = "1s", timeout = "500ms", start_interval = "5ms" }',
            'restart = "always"', f'min_uptime = "{ct.TITAN_MIN_UPTIME_S:g}s"',
            'backoff = { initial = "0ms", max = "1s" }',
        ]
        for s in self.graph.services:
            lines += ["", f"[services.{q(s.name)}]", f'group = "t{s.tier + 1}"',
                      f"image = {q(images[s.name])}",
                      "args = [" + ", ".join(q(a) for a in ct.service_args(s)) + "]",
                      f"ports = [{q(f'127.0.0.1:{s.port}:{ct.INNER_PORT}')}]",
                      f"volumes = [{q(f'{self.share}:{ct.SHARE}')}]",
                      f'health = {{ http = "http://127.0.0.1:{s.port}/health" }}']
        return self.rel.write(lines, dict(images))


class SwitchComposeStack(ct.ComposeStack):
    """C1's compose stack with an image per service: `docker-compose up -d` of a file with
    release B's digests recreates the services whose image changed."""

    def __init__(self, env, graph, sdir, interval, images):
        self.images = dict(images)
        super().__init__(env, graph, sdir, interval)

    def compose_file(self):
        doc = json.loads(super().compose_file())
        for name, svc in doc["services"].items():
            svc["image"] = self.images[name]
        return json.dumps(doc, indent=1) + "\n"

    def use(self, images):
        self.images = dict(images)
        self.file.write_text(self.compose_file())


def _container_figures(stack, before_ids, after_ids, changed):
    unchanged = [stack.container(s) for s in stack.graph.services if s.name not in changed]
    moved = [stack.container(s) for s in stack.graph.services if s.name in changed]
    return {"containers_changed_unchanged": sorted(c for c in unchanged
                                                   if after_ids.get(c) != before_ids.get(c)),
            "containers_recreated": sum(1 for c in moved if after_ids.get(c) != before_ids.get(c))}


def _images_in(stack, changed, want):
    got = stack.env.inspect([stack.container(s) for s in stack.graph.services
                             if s.name in changed], "{{.Config.Image}}")
    return sum(1 for v in got.values() if v.strip() == want)


def cswitch_titan(env, binary, sdir, reps, images):
    graph = cswitch_graph()
    row = {"key": "titan", "label": "titan-supervisor `switch`", "runs": [], "error": None,
           "notes": []}
    host = ContainerHost(env, graph, sdir, binary)
    try:
        host.remove()
        host.wait_ports_free()
        ids = {k: host.write(v) for k, v in images.items()}
        host.rel.install(ids["A"])
        ct._quiet()
        host.launch()
        log("C2-switch: titan-supervisor, 16 containers up (release A)")
        ct.wait_healthy(host, 120)
        wait_until("every service healthy in titan-supervisor's status",
                   lambda: probe.all_healthy_in(probe.titan_status(host.sock), 16), 60, 0.05)
        time.sleep(2.0)
        for rep in range(reps):
            to = "B" if rep % 2 == 0 else "A"
            log(f"C2-switch#{rep + 1}: titan-supervisor switch -> {to}")
            before_ids, before = ct.identities(host), host.rel.status()
            sw = host.rel.switch(ids[to])
            expect_verified(sw)
            after_ids, after = ct.identities(host), host.rel.status()
            r = {"to": to, "wall_ms": sw["wall_ms"],
                 "steps": {s["step"]: s["ms"] for s in sw["steps"]}, "gaps": gaps(sw)}
            r.update(changes(before, after, CHANGED))
            r.update(start_log_figures(graph, host.start_log, sw["t0_ns"], CHANGED))
            r.update(_container_figures(host, before_ids, after_ids, CHANGED))
            r["new_definition"] = _images_in(host, CHANGED, images[to]["s04"])
            _log_switch(r)
            log(f"  containers: {r['containers_recreated']} recreated, unchanged ones changed: "
                f"{len(r['containers_changed_unchanged'])}")
            row["runs"].append(r)
            host.rel.wait_probation(ids[to])
            time.sleep(1.0)
    except BenchError as e:
        log(f"  failed: {e}")
        row["error"] = str(e)
    finally:
        try:
            host.close()
        except BenchError as e:
            log(f"cleanup of titan-supervisor: {e}")
        row["notes"] += host.notes
    return row


def cswitch_compose(env, sdir, reps, images):
    graph = cswitch_graph()
    row = {"key": "compose", "label": f"docker-compose `up -d` with the new digests "
           f"(healthcheck interval {COMPOSE_INTERVAL}), then every /health polled",
           "runs": [], "error": None, "notes": []}
    stack = SwitchComposeStack(env, graph, sdir, COMPOSE_INTERVAL, images["A"])
    try:
        stack.remove()
        stack.wait_ports_free()
        ct._quiet()
        stack.fresh_log()
        stack.launch()
        log("C2-switch: docker-compose, 16 containers up (release A)")
        ct.wait_healthy(stack, 120)
        stack.wait_up(120)
        time.sleep(2.0)
        # for scale: `up -d` of the same file, nothing to change (compose's own cost)
        before_ids = ct.identities(stack)
        stack.launch()
        row["noop_up_ms"] = stack.wait_up(120) * 1000
        row["noop_touched"] = len([n for n, v in ct.identities(stack).items()
                                   if before_ids.get(n) != v])
        log(f"  `up -d` with nothing changed returned after {row['noop_up_ms']:.0f} ms "
            f"(containers touched: {row['noop_touched']})")
        time.sleep(2.0)
        for rep in range(reps):
            to = "B" if rep % 2 == 0 else "A"
            log(f"C2-switch#{rep + 1}: docker-compose up -d -> {to}")
            stack.use(images[to])
            before_ids = ct.identities(stack)
            stack.launch()
            t0_ns = stack.t0_ns
            up_s = stack.wait_up(120)
            # after `up -d` returned: the old containers are gone; every service polled
            poller = probe.HealthPoller(graph.ports, interval=ct.C1_POLL_S)
            healthy = poller.run(60, stack.alive)
            all_ms = (max(w for w, _ in healthy.values()) - t0_ns) / 1e6
            after_ids = ct.identities(stack)
            r = {"to": to, "wall_ms": all_ms, "up_returned_ms": up_s * 1000}
            r.update(start_log_figures(graph, stack.start_log, t0_ns, CHANGED))
            r.update(_container_figures(stack, before_ids, after_ids, CHANGED))
            r["new_definition"] = _images_in(stack, CHANGED, images[to]["s04"])
            r["restarts_unchanged"] = None
            log(f"  all healthy {all_ms:.0f} ms (`up -d` returned {up_s * 1000:.0f} ms, changed "
                f"ready {r['ready_ms'] or 0:.0f} ms); recreated {r['containers_recreated']}, "
                f"unchanged ones changed {len(r['containers_changed_unchanged'])}")
            row["runs"].append(r)
            time.sleep(2.0)
    except BenchError as e:
        log(f"  failed: {e}")
        row["error"] = str(e)
    finally:
        try:
            stack.close()
        except BenchError as e:
            log(f"cleanup of docker-compose: {e}")
        row["notes"] += stack.notes
    return row


def cswitch(env, binary, sdirs, reps):
    """C2-switch: the variant image built and pushed, then titan-supervisor's switches and
    docker-compose's `up -d`, each A -> B -> A ... `reps` times."""
    variant = variant_image(env, "bench-switch")
    images = {"A": {s.name: env.image for s in cswitch_graph().services}}
    images["B"] = {n: (variant if n in CHANGED else img) for n, img in images["A"].items()}
    log(f"C2-switch: variant image {variant}")
    rows = [cswitch_titan(env, binary, sdirs("C2-switch-titan"), reps, images),
            cswitch_compose(env, sdirs("C2-switch-compose"), reps, images)]
    return {"reps": reps, "rows": rows, "changed": list(CHANGED), "ready_ms": READY_MS,
            "variant": variant, "image": env.image}
