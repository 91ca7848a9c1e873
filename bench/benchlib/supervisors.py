"""The three supervisors under test behind one interface: each writes its own config for a
Graph into a private session directory, launches (t0 is taken right before the supervisor
process starts), exposes its daemon's pid, starts a tier on demand (the "scripted gate"), and on
close stops everything and sweeps whatever is left (by the session directory in command lines).

Modes: "native" = the supervisor's own ordering (titan: health-gated dependencies; PM2: ecosystem
file order; supervisord: priority per tier); "gate" = nothing autostarts, the harness starts tier
by tier and waits for every port of a tier before the next (what the original deploy scripts did).
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .procs import (BenchError, check_ports_free, pids_mentioning, port_free, read_pid_file,
                    run_cmd, stop_popen, sweep, wait_until)


def short_cmd(cmd, sdir):
    """A leftover's command line, short enough for a note."""
    words = cmd.replace(str(sdir), "$DIR").split()
    if "test-service" in words and "--name" in words:
        return "test-service " + words[words.index("--name") + 1]
    return " ".join(words)[:80]


class Session:
    """One launch of one supervisor on one graph; a context manager that always cleans up."""

    def __init__(self, sup, graph, sdir, mode):
        self.sup, self.graph, self.dir, self.mode = sup, graph, Path(sdir), mode
        self.start_log = self.dir / "start.log"
        self.pid_dir = self.dir / "pids"
        self.pid_dir.mkdir(parents=True)
        self.t0_ns = None
        self.proc = None           # the supervisor process, when we launched it directly
        self.notes = []            # cleanup remarks worth reporting

    def __enter__(self):
        check_ports_free(self.graph.ports)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
            # A supervisor's stop may return while its children are still exiting.
            wait_until("the session's processes to exit",
                       lambda: not pids_mentioning(str(self.dir)), 3, 0.02)
        except BenchError:
            pass                   # the sweep below kills them and says so
        finally:
            left = sweep(str(self.dir))
            if left:
                what = "; ".join(sorted({short_cmd(c, self.dir) for c in left}))
                self.notes.append(f"{len(left)} process(es) left after stop, killed: {what}")
            try:
                wait_until("the session's ports to be free",
                           lambda: all(port_free(p) for p in self.graph.ports), 10, 0.05)
            except BenchError:
                if exc is None:    # else the error that ended the session is the one to report
                    raise
        return False

    def pid_of(self, service):
        return read_pid_file(self.pid_dir / f"{service.name}.pid")

    def popen(self, args, name, env=None):
        """Launches the supervisor itself, in its own session so its group can be killed."""
        out = open(self.dir / f"{name}.out", "wb")
        try:
            return subprocess.Popen(args, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    # Overridden per supervisor.
    def launch(self):
        raise NotImplementedError

    def daemon_pid(self):
        return self.proc.pid

    def start_tier(self, index):
        raise NotImplementedError

    def stop(self):
        if self.proc is not None:
            code = stop_popen(self.proc, signal.SIGTERM, timeout=60)
            if code != 0:
                self.notes.append(f"{self.sup.label} exited {code} on SIGTERM")


# --- titan-supervisor --------------------------------------------------------------------------

def toml_str(s):
    return json.dumps(str(s))      # a JSON string is a valid TOML basic string


def toml_list(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


class Titan:
    key, label, modes = "titan", "titan-supervisor", ("native",)

    def __init__(self, binary, service_binary):
        self.binary = Path(binary)
        self.service_binary = Path(service_binary)

    def unavailable(self):
        """None when `run` exists, else why not."""
        if not self.binary.exists():
            return f"{self.binary} not built"
        done = subprocess.run([self.binary, "run", "--help"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10)
        return None if done.returncode == 0 else "run not available"

    def version(self):
        return run_cmd([self.binary, "--version"], 10).strip()

    def config(self, graph, sess):
        lines = [
            "[supervisor]", 'project = "bench"', 'state_dir = "state"', 'log_dir = "logs"',
            'socket = "supervisor.sock"', "",
            "[groups]", "order = " + toml_list(f"t{i + 1}" for i in range(len(graph.tiers))), "",
            "[defaults]",
            'health = { interval = "1s", timeout = "500ms", start_interval = "5ms" }',
            'restart = "always"', 'min_uptime = "1s"', 'backoff = { initial = "0ms", max = "1s" }',
        ]
        for s in graph.services:
            lines += ["", f"[services.{toml_str(s.name)}]", f'group = "t{s.tier + 1}"']
            if graph.explicit and s.deps:
                lines.append("depends_on = " + toml_list(s.deps))
            lines.append("command = " + toml_list(s.command(self.service_binary,
                                                            sess.start_log, sess.pid_dir)))
            lines.append(f'health = {{ http = "http://127.0.0.1:{s.port}/health" }}')
        return "\n".join(lines) + "\n"

    def session(self, graph, sdir, mode):
        return TitanSession(self, graph, sdir, mode)


class TitanSession(Session):
    def __init__(self, sup, graph, sdir, mode):
        super().__init__(sup, graph, sdir, mode)
        self.cfg = self.dir / "services.toml"
        self.cfg.write_text(sup.config(graph, self))
        run_cmd([sup.binary, "validate", self.cfg], 30)

    def launch(self):
        self.t0_ns = time.time_ns()
        self.proc = self.popen([self.sup.binary, "run", "--config", self.cfg], "titan")


# --- PM2 ---------------------------------------------------------------------------------------

class PM2:
    key, label, modes = "pm2", "PM2", ("native", "gate")

    def __init__(self, peers, service_binary):
        self.pm2 = Path(peers) / "node_modules" / ".bin" / "pm2"
        self.pkg = Path(peers) / "node_modules" / "pm2" / "package.json"
        self.service_binary = Path(service_binary)

    def unavailable(self):
        return None if self.pm2.exists() else "not installed (run bench/setup.sh)"

    def version(self):
        node = run_cmd(["node", "--version"], 10).strip()
        return f"PM2 {json.loads(self.pkg.read_text())['version']} (node {node})"

    def ecosystem(self, services, sess):
        apps = [{
            "name": s.name,
            "script": str(self.service_binary),
            "args": s.command(self.service_binary, sess.start_log, sess.pid_dir)[1:],
            "interpreter": "none",          # a native binary, not a node script
            "exec_mode": "fork",
            "autorestart": True,
            "restart_delay": 0,
            "cwd": str(sess.dir),
        } for s in services]
        return "module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n"

    def session(self, graph, sdir, mode):
        return PM2Session(self, graph, sdir, mode)


class PM2Session(Session):
    def __init__(self, sup, graph, sdir, mode):
        super().__init__(sup, graph, sdir, mode)
        self.home = self.dir / "pm2"
        self.env = dict(os.environ, PM2_HOME=str(self.home))
        self.files = []
        if mode == "native":       # one ecosystem file, services in tier order
            self.files.append(self.dir / "ecosystem.config.js")
            self.files[0].write_text(sup.ecosystem(graph.services, self))
        else:                      # one ecosystem file per tier
            for i, tier in enumerate(graph.tiers):
                self.files.append(self.dir / f"tier{i + 1}.config.js")
                self.files[-1].write_text(sup.ecosystem(tier, self))

    def pm2(self, *args, timeout=120):
        return run_cmd([self.sup.pm2, *args], timeout, env=self.env, log=self.dir / "pm2-cli.log")

    def launch(self):
        # The PM2 daemon is not running yet: the first `pm2 start` spawns it, as after a boot.
        self.t0_ns = time.time_ns()
        if self.mode == "native":
            self.pm2("start", self.files[0])

    def start_tier(self, index):
        self.pm2("start", self.files[index])

    def daemon_pid(self):
        return wait_until("the PM2 daemon's pid file", lambda: read_pid_file(self.home / "pm2.pid"),
                          10)

    def stop(self):
        if (self.home / "pm2.pid").exists():
            try:
                self.pm2("kill", timeout=60)
            except BenchError as e:
                self.notes.append(f"pm2 kill failed: {e}")


# --- supervisord -------------------------------------------------------------------------------

class Supervisord:
    key, label, modes = "supervisord", "supervisord", ("native", "gate")

    def __init__(self, peers, service_binary):
        self.bin = Path(peers) / "venv" / "bin"
        self.service_binary = Path(service_binary)

    def unavailable(self):
        ok = (self.bin / "supervisord").exists()
        return None if ok else "not installed (run bench/setup.sh)"

    def version(self):
        v = run_cmd([self.bin / "supervisord", "--version"], 10).strip()
        py = run_cmd([self.bin / "python", "-c", "import platform;print(platform.python_version())"],
                     10).strip()
        return f"supervisord {v} (python {py})"

    def config(self, graph, sess, autostart):
        d = sess.dir
        lines = [
            "[unix_http_server]", f"file={d}/supervisor.sock", "",
            "[supervisord]", f"logfile={d}/supervisord.log", f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}/sv-logs", "nodaemon=true", "minfds=4096", "loglevel=info", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{d}/supervisor.sock", "",
        ]
        for i, tier in enumerate(graph.tiers):
            lines += [f"[group:t{i + 1}]", "programs=" + ",".join(s.name for s in tier),
                      f"priority={(i + 1) * 10}", ""]
        for s in graph.services:
            cmd = " ".join(s.command(self.service_binary, sess.start_log, sess.pid_dir))
            lines += [f"[program:{s.name}]", f"command={cmd}", f"directory={d}",
                      f"priority={(s.tier + 1) * 10}", f"autostart={str(autostart).lower()}",
                      "autorestart=true", "startsecs=0", "startretries=3", "stopwaitsecs=5",
                      "redirect_stderr=true", ""]
        return "\n".join(lines)

    def session(self, graph, sdir, mode):
        return SupervisordSession(self, graph, sdir, mode)


class SupervisordSession(Session):
    def __init__(self, sup, graph, sdir, mode):
        super().__init__(sup, graph, sdir, mode)
        (self.dir / "sv-logs").mkdir()
        self.cfg = self.dir / "supervisord.conf"
        self.cfg.write_text(sup.config(graph, self, autostart=(mode == "native")))
        self.sock = self.dir / "supervisor.sock"

    def launch(self):
        self.t0_ns = time.time_ns()
        self.proc = self.popen([self.sup.bin / "supervisord", "-n", "-c", self.cfg], "supervisord")

    def control_socket_up(self):
        if self.proc.poll() is not None:
            raise BenchError(f"supervisord exited {self.proc.returncode}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            return s.connect_ex(str(self.sock)) == 0
        finally:
            s.close()

    def start_tier(self, index):
        wait_until("supervisord's control socket", self.control_socket_up, 15)
        run_cmd([self.sup.bin / "supervisorctl", "-c", self.cfg, "start", f"t{index + 1}:*"], 60,
                log=self.dir / "supervisorctl.log")
