"""The three supervisors under test behind one interface: each writes its own config for a
Graph into a private session directory, launches (t0 is taken right before the supervisor
process starts), exposes its daemon's pid, starts a tier on demand (the "scripted gate"), and on
close stops everything and sweeps whatever is left (by the session directory in command lines).

Modes: "native" = the supervisor's own ordering (titan: health-gated dependencies; PM2: ecosystem
file order; supervisord: priority per tier); "gate" = nothing autostarts, the harness starts tier
by tier and waits for every port of a tier before the next (what the original deploy scripts did).

W5 (a `Flood`, modes "logs" and, for PM2, "logs-fixed") configures each supervisor's own log
rotation instead, and its sessions also say where the logs are (`log_files`, oldest first), whether
a rotation or compression is still under way (`log_pending`) and the CPU time of the processes
doing the logging (`log_cpu`).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .procs import (BenchError, check_ports_free, pids_mentioning, port_free, proc_cpu_seconds,
                    proc_state, read_pid_file, run_cmd, stop_popen, sweep, wait_until)
from .topology import MIB, Flood


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

    # W5, overridden per supervisor.
    def log_files(self, service):
        """[(path, kind)] of one service's log files, oldest first; kind is "current" (the file
        being written), "plain" (rotated), "gz" or "partial" (a compression under way)."""
        raise NotImplementedError

    def log_pending(self, service):
        """True while a rotation or a compression of the service's log is still to come."""
        return False

    def log_cpu(self):
        """{process or thread: CPU seconds} of what captures, rotates and compresses the logs."""
        return {"daemon": proc_cpu_seconds(self.daemon_pid())}


def _scan(directory):
    """{name: DirEntry} of a directory, empty when it does not exist (yet)."""
    try:
        return {e.name: e for e in os.scandir(directory)}
    except FileNotFoundError:
        return {}


def thread_cpu_seconds(pid, thread_name):
    """CPU seconds of the threads of pid named thread_name (summed); 0 when there is none."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == thread_name:
                    total += proc_cpu_seconds(f"{pid}/task/{tid}")
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


# --- titan-supervisor --------------------------------------------------------------------------

def toml_str(s):
    return json.dumps(str(s))      # a JSON string is a valid TOML basic string


def toml_list(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


class Titan:
    key, label, modes = "titan", "titan-supervisor", ("native", "logs")

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
        if isinstance(graph, Flood):
            return self.flood_config(graph, sess)
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

    def flood_config(self, flood, sess):
        """W5: services that run once (exit 0 after their lines), output rotated at max_size,
        rotated files gzipped, `backups` of them kept."""
        lines = [
            "[supervisor]", 'project = "bench"', 'state_dir = "state"', 'log_dir = "logs"',
            'socket = "supervisor.sock"', "",
            "[defaults]", 'restart = "never"', 'health = "none"',
            f'logs = {{ max_size = "{flood.max_size // MIB}MiB", retain = "30d", '
            f"max_files = {flood.backups}, compress = true }}",
        ]
        for s in flood.services:
            lines += ["", f"[services.{toml_str(s.name)}]",
                      "command = " + toml_list(s.command(self.service_binary, sess.start_log,
                                                         sess.pid_dir))]
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

    # <log_dir>/<service>/current.log, rotated to <service>-<UTC stamp>[-N].log, gzipped to
    # .log.gz through .log.gz.tmp.
    def log_dir(self, service):
        return self.dir / "logs" / service.name

    def log_files(self, service):
        entries, prefix = _scan(self.log_dir(service)), service.name + "-"
        rotated = []
        for name in entries:
            if not name.startswith(prefix):
                continue
            if name.endswith(".log.gz.tmp"):
                rotated.append((name, "partial"))
            elif name.endswith(".log.gz"):
                rotated.append((name, "gz"))
            elif name.endswith(".log"):
                rotated.append((name, "plain"))

        def order(item):      # <stamp>[-N], as titan's own listing sorts them
            base = item[0][len(prefix):].split(".log")[0]
            stamp, _, n = base.partition("Z")
            n = n.lstrip("-")
            return (stamp, int(n) if n.isdigit() else 0, item[1] != "plain")
        files = [(self.log_dir(service) / n, k) for n, k in sorted(rotated, key=order)]
        if "current.log" in entries:
            files.append((self.log_dir(service) / "current.log", "current"))
        return files

    def log_pending(self, service):
        # a rotated file not yet compressed, or a compression under way
        return any(k in ("plain", "partial") for _, k in self.log_files(service))

    def log_cpu(self):
        pid = self.daemon_pid()
        return {"titan-supervisor": proc_cpu_seconds(pid),
                "of which titan-logs thread": thread_cpu_seconds(pid, "titan-logs"),
                "of which titan-gzip thread": thread_cpu_seconds(pid, "titan-gzip")}


# --- PM2 ---------------------------------------------------------------------------------------

LOGROTATE_SETTINGS = {               # `pm2 set pm2-logrotate:KEY VALUE` (stored as strings)
    "max_size": "10M", "retain": "30", "compress": "true",
    "workerInterval": "1",               # seconds between size checks; the README's minimum
}
# pm2-logrotate 3.0.0 reads `compress` with parseBool(), which only accepts the string "true",
# while pmx has already cast it to the boolean true: `compress true` is ignored
# (keymetrics/pm2-logrotate#201, fix proposed in #202). "logs-fixed" applies that fix.
PARSEBOOL = "const parseBool = (str, defaultVal = false) => {"
PARSEBOOL_FIX = PARSEBOOL + "\n  if (typeof str === 'boolean') return str;"


class PM2:
    key, label, modes = "pm2", "PM2", ("native", "gate", "logs", "logs-fixed")

    def __init__(self, peers, service_binary):
        self.pm2 = Path(peers) / "node_modules" / ".bin" / "pm2"
        self.pkg = Path(peers) / "node_modules" / "pm2" / "package.json"
        self.logrotate = Path(peers) / "node_modules" / "pm2-logrotate"
        self.service_binary = Path(service_binary)

    def unavailable(self):
        return None if self.pm2.exists() else "not installed (run bench/setup.sh)"

    def logrotate_version(self):
        pkg = self.logrotate / "package.json"
        return json.loads(pkg.read_text())["version"] if pkg.exists() else None

    def version(self):
        node = run_cmd(["node", "--version"], 10).strip()
        v = f"PM2 {json.loads(self.pkg.read_text())['version']} (node {node})"
        rotate = self.logrotate_version()
        return v + (f", pm2-logrotate {rotate}" if rotate else "")

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
        if isinstance(sess.graph, Flood):
            for app in apps:                # W5: run once; PM2's default log files, named
                app["autorestart"] = False  # explicitly; no timestamp prefix (the default)
                app["out_file"] = str(sess.home / "logs" / f"{app['name']}-out.log")
                app["error_file"] = str(sess.home / "logs" / f"{app['name']}-err.log")
        return "module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n"

    def session(self, graph, sdir, mode):
        return PM2Session(self, graph, sdir, mode)


class PM2Session(Session):
    def __init__(self, sup, graph, sdir, mode):
        super().__init__(sup, graph, sdir, mode)
        self.home = self.dir / "pm2"
        self.env = dict(os.environ, PM2_HOME=str(self.home))
        self.files = []
        if isinstance(graph, Flood):
            self.install_logrotate(fixed=(mode == "logs-fixed"))
        if mode in ("native", "logs", "logs-fixed"):   # one ecosystem file, in tier order
            self.files.append(self.dir / "ecosystem.config.js")
            self.files[0].write_text(sup.ecosystem(graph.services, self))
        else:                      # one ecosystem file per tier
            for i, tier in enumerate(graph.tiers):
                self.files.append(self.dir / f"tier{i + 1}.config.js")
                self.files[-1].write_text(sup.ecosystem(tier, self))

    def pm2(self, *args, timeout=120):
        return run_cmd([self.sup.pm2, *args], timeout, env=self.env, log=self.dir / "pm2-cli.log")

    def install_logrotate(self, fixed):
        """Leaves PM2_HOME as `pm2 install pm2-logrotate` and `pm2 set pm2-logrotate:KEY VALUE`
        would, without fetching the module from npm in every session: the module's files in
        $PM2_HOME/modules (its dependencies linked from bench/.peers), its settings in
        module_conf.json. The daemon launches installed modules when it starts, before any app."""
        src = self.sup.logrotate
        if not (src / "app.js").exists():
            raise BenchError("pm2-logrotate not installed (run bench/setup.sh)")
        dst = self.home / "modules" / "pm2-logrotate" / "node_modules" / "pm2-logrotate"
        dst.mkdir(parents=True)
        shutil.copy(src / "package.json", dst / "package.json")
        app = (src / "app.js").read_text()
        if fixed:
            if PARSEBOOL not in app:
                raise BenchError("pm2-logrotate's parseBool changed: the compress fix no longer "
                                 "applies")
            app = app.replace(PARSEBOOL, PARSEBOOL_FIX)
        (dst / "app.js").write_text(app)
        (dst / "node_modules").symlink_to(src.parent)
        conf = dict(json.loads((src / "package.json").read_text()).get("config", {}))
        conf.update(LOGROTATE_SETTINGS)
        (self.home / "logs").mkdir()
        (self.home / "module_conf.json").write_text(json.dumps(
            {"module-db-v2": {"pm2-logrotate": {}}, "pm2-logrotate": conf}, indent=4))

    def launch(self):
        # The PM2 daemon is not running yet: the first `pm2 start` spawns it, as after a boot.
        self.t0_ns = time.time_ns()
        if self.mode in ("native", "logs", "logs-fixed"):
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

    # $PM2_HOME/logs/<app>-out.log and -err.log; pm2-logrotate copies a file that has reached
    # max_size to <app>-out__<YYYY-MM-DD_HH-mm-ss>.log (.log.gz when compressing, written in
    # place), then truncates the original.
    def log_files(self, service):
        entries, files = _scan(self.home / "logs"), []
        for stream in ("out", "err"):
            prefix = f"{service.name}-{stream}__"
            rotated = sorted(n for n in entries if n.startswith(prefix)
                             and (n.endswith(".log") or n.endswith(".log.gz")))
            files += [(self.home / "logs" / n, "gz" if n.endswith(".gz") else "plain")
                      for n in rotated]
            if f"{service.name}-{stream}.log" in entries:
                files.append((self.home / "logs" / f"{service.name}-{stream}.log", "current"))
        return files

    def log_pending(self, service):
        """A log at or over max_size (pm2-logrotate will copy it at its next check), or a copy
        under way: pm2-logrotate holds one of the service's files open (it reads the log, writes
        the copy, and truncates the log only once the copy is complete). Two copies of one file
        can overlap when one takes longer than workerInterval."""
        for stream in ("out", "err"):
            try:
                if (self.home / "logs" / f"{service.name}-{stream}.log").stat().st_size >= \
                        self.graph.max_size:
                    return True
            except FileNotFoundError:
                pass
        pid = self.logrotate_pid()
        if pid is None:
            return False
        prefix = str(self.home / "logs" / f"{service.name}-")
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    return True
            except OSError:
                pass
        return False

    def logrotate_pid(self):
        """The pm2-logrotate process (looked up again only when it is gone)."""
        pid = getattr(self, "_logrotate_pid", None)
        if pid is None or proc_state(pid) in (None, "Z"):
            pids = pids_mentioning(str(self.home / "modules" / "pm2-logrotate"))
            pid = self._logrotate_pid = pids[0] if pids else None
        return pid

    def log_cpu(self):
        cpu = {"God daemon": proc_cpu_seconds(self.daemon_pid())}
        pid = self.logrotate_pid()
        cpu["pm2-logrotate"] = proc_cpu_seconds(pid) if pid else 0.0
        return cpu


# --- supervisord -------------------------------------------------------------------------------

class Supervisord:
    key, label, modes = "supervisord", "supervisord", ("native", "gate", "logs")

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
        flood = isinstance(graph, Flood)
        for s in graph.services:
            cmd = " ".join(s.command(self.service_binary, sess.start_log, sess.pid_dir))
            lines += [f"[program:{s.name}]", f"command={cmd}", f"directory={d}",
                      f"priority={(s.tier + 1) * 10}", f"autostart={str(autostart).lower()}",
                      f"autorestart={'false' if flood else 'true'}", "startsecs=0",
                      "startretries=3", "stopwaitsecs=5", "redirect_stderr=true"]
            if flood:              # W5: its own rotation (by rename; it has no compression)
                lines += [f"stdout_logfile={d}/sv-logs/{s.name}.log",
                          f"stdout_logfile_maxbytes={graph.max_size // MIB}MB",
                          f"stdout_logfile_backups={graph.backups}"]
            lines.append("")
        return "\n".join(lines)

    def session(self, graph, sdir, mode):
        return SupervisordSession(self, graph, sdir, mode)


class SupervisordSession(Session):
    def __init__(self, sup, graph, sdir, mode):
        super().__init__(sup, graph, sdir, mode)
        (self.dir / "sv-logs").mkdir()
        self.cfg = self.dir / "supervisord.conf"
        self.cfg.write_text(sup.config(graph, self, autostart=(mode in ("native", "logs"))))
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

    # sv-logs/<program>.log, rotated by rename to .log.1 (the newest) ... .log.<backups>.
    def log_files(self, service):
        entries, base = _scan(self.dir / "sv-logs"), f"{service.name}.log"
        rotated = sorted((int(m.group(1)), n) for n in entries
                         if (m := re.fullmatch(re.escape(base) + r"\.(\d+)", n)))
        files = [(self.dir / "sv-logs" / n, "plain") for _, n in reversed(rotated)]
        if base in entries:
            files.append((self.dir / "sv-logs" / base, "current"))
        return files

    def log_cpu(self):
        return {"supervisord": proc_cpu_seconds(self.daemon_pid())}
