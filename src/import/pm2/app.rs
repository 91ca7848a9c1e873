//! One PM2 app as one native service: its command line from script/interpreter/args, its
//! environment (with `--env NAME` merged and secrets turned into `${VAR}` references) and its
//! restart, timeout and memory settings. Every other key becomes a warning naming the app.

use std::collections::BTreeMap;
use std::time::Duration;

use super::jsdata::{Data, Node};
use super::values::{count, duration, scalar_text, size, whole, words};
use super::{Notes, Pm2Error};
use crate::config::interp::is_var_name;

/// PM2's cap on exp_backoff_restart_delay: the delay doubles up to 15 s.
const EXP_BACKOFF_MAX: Duration = Duration::from_secs(15);

/// A native service, as services.toml will say it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) command: Vec<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) env: BTreeMap<String, Env>,
    pub(crate) restart: &'static str,
    pub(crate) max_restarts: Option<u32>,
    pub(crate) min_uptime: Option<Duration>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) stop_timeout: Option<Duration>,
    pub(crate) startup_timeout: Option<Duration>,
    pub(crate) memory_restart: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Env {
    Plain(String),
    /// Written as `${KEY}`: the value stays out of services.toml.
    Secret,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// Where it came from, for a comment beside it.
    pub(crate) why: String,
}

/// Keys read to build the command line.
const COMMAND_KEYS: &[&str] =
    &["name", "script", "interpreter", "exec_interpreter", "interpreter_args", "node_args", "args"];

/// One app. `notes` collects the warnings; `env_name` is `--env`.
pub(crate) fn convert(
    app: &Node,
    index: usize,
    env_name: Option<&str>,
    notes: &mut Notes,
) -> Result<Service, Pm2Error> {
    let Data::Map(entries) = &app.data else {
        return Err(notes.shape(app.line, format!("apps[{index}] is not an object")));
    };
    let name = match app.get("name").map(|n| &n.data) {
        Some(Data::Str(name)) if name == "supervisor" => {
            return Err(Pm2Error::Reserved { file: notes.file.clone(), line: app.line });
        }
        Some(Data::Str(name)) if crate::config::validate::valid_name(name) => name.clone(),
        Some(Data::Str(name)) => {
            return Err(Pm2Error::BadName { file: notes.file.clone(), line: app.line, app: name.clone() });
        }
        _ => {
            return Err(
                notes.shape(app.line, format!("apps[{index}] has no name: services.toml needs one per app"))
            );
        }
    };
    let mut cx = Cx { app: &name, notes };
    let mut svc = Service { command: cx.command(app)?, restart: "always", ..Service::default() };
    svc.env = cx.env(app, env_name)?;
    for (key, value) in entries {
        if !COMMAND_KEYS.contains(&key.as_str()) && !key.starts_with("env") {
            cx.key(&mut svc, key, value)?;
        } else if key.starts_with("env") && key != "env" && !key.starts_with("env_") {
            cx.notes.warn(value.line, &name, key, "unknown PM2 key: not imported");
        }
    }
    if app.get("exp_backoff_restart_delay").is_some() && app.get("restart_delay").is_some() {
        let line = app.get("restart_delay").map_or(app.line, |n| n.line);
        cx.notes.warn(line, &name, "restart_delay", "exp_backoff_restart_delay wins, as in PM2");
    }
    svc.name = name;
    Ok(svc)
}

struct Cx<'a> {
    app: &'a str,
    notes: &'a mut Notes,
}

impl Cx<'_> {
    fn bad(&self, node: &Node, key: &str, message: String) -> Pm2Error {
        self.notes.value(node.line, self.app, key, message)
    }

    fn warn(&mut self, node: &Node, key: &str, message: &str) {
        self.notes.warn(node.line, self.app, key, message);
    }

    fn string(&self, node: &Node, key: &str) -> Result<String, Pm2Error> {
        match &node.data {
            Data::Str(s) => Ok(s.clone()),
            _ => Err(self.bad(node, key, "expected a string".into())),
        }
    }

    /// `[interpreter, interpreter_args..., script, args...]`, or the script itself when it runs
    /// without an interpreter.
    fn command(&mut self, app: &Node) -> Result<Vec<String>, Pm2Error> {
        let Some(script_node) = app.get("script") else {
            return Err(self.notes.value(
                app.line,
                self.app,
                "script",
                "missing: PM2 needs a script to run".into(),
            ));
        };
        let script = self.string(script_node, "script")?;
        if script.is_empty() {
            return Err(self.bad(script_node, "script", "is empty".into()));
        }
        let interp_node = app.get("interpreter").map(|n| ("interpreter", n));
        let interp_node =
            interp_node.or_else(|| app.get("exec_interpreter").map(|n| ("exec_interpreter", n)));
        let interpreter = match interp_node {
            Some((key, n)) => Some(self.string(n, key)?).filter(|i| i != "none" && !i.is_empty()),
            None => default_interpreter(&script).map(str::to_owned),
        };
        let mut argv = Vec::new();
        let interp_args = app.get("interpreter_args").map(|n| ("interpreter_args", n));
        let interp_args = interp_args.or_else(|| app.get("node_args").map(|n| ("node_args", n)));
        if let Some(interpreter) = interpreter {
            argv.push(interpreter);
            if let Some((key, n)) = interp_args {
                argv.extend(words(n).map_err(|e| self.bad(n, key, e))?);
            }
        } else if let Some((key, n)) = interp_args {
            self.warn(n, key, "ignored: the script runs without an interpreter");
        }
        argv.push(script);
        if let Some(n) = app.get("args") {
            argv.extend(words(n).map_err(|e| self.bad(n, "args", e))?);
        }
        Ok(argv)
    }

    /// `env`, with `env_<NAME>` merged over it for `--env NAME`.
    fn env(&mut self, app: &Node, env_name: Option<&str>) -> Result<BTreeMap<String, Env>, Pm2Error> {
        let mut out = BTreeMap::new();
        let chosen = env_name.map(|n| format!("env_{n}"));
        let layers = [Some("env"), chosen.as_deref()];
        for key in layers.into_iter().flatten() {
            let Some(node) = app.get(key) else {
                if key != "env" {
                    self.notes.warn(app.line, self.app, key, "not in this app: only env is used");
                }
                continue;
            };
            let Data::Map(vars) = &node.data else {
                return Err(self.bad(node, key, "expected an object".into()));
            };
            for (var, value) in vars {
                let path = format!("{key}.{var}");
                if !is_var_name(var) {
                    return Err(self.bad(value, &path, "not a valid environment variable name".into()));
                }
                let Some(text) = scalar_text(value) else {
                    return Err(self.bad(value, &path, "expected a string, number or boolean".into()));
                };
                out.insert(var.clone(), self.secret_or_plain(value, &path, var, text));
            }
        }
        Ok(out)
    }

    fn secret_or_plain(&mut self, node: &Node, path: &str, var: &str, text: String) -> Env {
        if !looks_secret(var) {
            return Env::Plain(text);
        }
        let message = format!(
            "looks secret: written as \"${{{var}}}\", not inlined; put {var}=... in the [supervisor] env_file (mode 0600)"
        );
        self.warn(node, path, &message);
        Env::Secret
    }

    /// Every key other than the command line and the environment.
    fn key(&mut self, svc: &mut Service, key: &str, v: &Node) -> Result<(), Pm2Error> {
        let bad = |cx: &Self, e: String| cx.bad(v, key, e);
        match key {
            "cwd" => svc.cwd = Some(self.string(v, key)?),
            "uid" | "user" => match &v.data {
                Data::Str(u) => svc.user = Some(u.clone()),
                _ => self.warn(v, key, "not imported: services.toml's user is a user name"),
            },
            "max_restarts" => svc.max_restarts = Some(count(v).map_err(|e| bad(self, e))?),
            "min_uptime" => svc.min_uptime = Some(duration(v).map_err(|e| bad(self, e))?),
            "kill_timeout" => svc.stop_timeout = Some(duration(v).map_err(|e| bad(self, e))?),
            "listen_timeout" => svc.startup_timeout = Some(self.nonzero(v, key)?),
            "max_memory_restart" => svc.memory_restart = Some(self.memory(v, key)?),
            "restart_delay" => self.restart_delay(svc, v)?,
            "exp_backoff_restart_delay" => self.exp_backoff(svc, v)?,
            "autorestart" => self.autorestart(svc, v)?,
            "stop_exit_codes" => self.stop_exit_codes(svc, v),
            "wait_ready" => self.wait_ready(svc, v),
            "instances" => self.instances(v),
            "exec_mode" => match &v.data {
                Data::Str(m) if m == "fork" || m == "fork_mode" => {}
                _ => self.warn(
                    v,
                    key,
                    "not imported: the supervisor runs one process per service (no cluster mode)",
                ),
            },
            "watch" | "merge_logs" | "combine_logs" | "time" | "source_map_support" | "vizion" | "force"
            | "pmx" | "automation" | "trace" | "deep_monitoring" | "disable_logs"
                if v.data == Data::Bool(false) => {} // off in PM2 too: nothing is lost
            other => {
                let message = unsupported(other).unwrap_or("unknown PM2 key: not imported");
                self.warn(v, key, message);
            }
        }
        Ok(())
    }

    fn nonzero(&self, v: &Node, key: &str) -> Result<Duration, Pm2Error> {
        match duration(v) {
            Ok(d) if d.is_zero() => Err(self.bad(v, key, "must be more than 0".into())),
            Ok(d) => Ok(d),
            Err(e) => Err(self.bad(v, key, e)),
        }
    }

    fn memory(&self, v: &Node, key: &str) -> Result<u64, Pm2Error> {
        match size(v) {
            Ok(b) if b < 1 << 20 => {
                Err(self.bad(v, key, "below services.toml's minimum memory_restart of 1MiB".into()))
            }
            Ok(b) => Ok(b),
            Err(e) => Err(self.bad(v, key, e)),
        }
    }

    fn restart_delay(&self, svc: &mut Service, v: &Node) -> Result<(), Pm2Error> {
        let d = duration(v).map_err(|e| self.bad(v, "restart_delay", e))?;
        if svc.backoff.is_none() && !d.is_zero() {
            let why = "PM2 restart_delay: the same delay before every restart".to_owned();
            svc.backoff = Some(Backoff { initial: d, max: d, why });
        }
        Ok(())
    }

    fn exp_backoff(&self, svc: &mut Service, v: &Node) -> Result<(), Pm2Error> {
        let d = self.nonzero(v, "exp_backoff_restart_delay")?;
        let max = d.max(EXP_BACKOFF_MAX);
        let why =
            "PM2 exp_backoff_restart_delay: doubling per crash, capped at 15s as PM2 caps it".to_owned();
        svc.backoff = Some(Backoff { initial: d, max, why });
        Ok(())
    }

    fn autorestart(&self, svc: &mut Service, v: &Node) -> Result<(), Pm2Error> {
        match v.data {
            Data::Bool(false) => svc.restart = "never",
            Data::Bool(true) => {}
            _ => return Err(self.bad(v, "autorestart", "expected true or false".into())),
        }
        Ok(())
    }

    /// `stop_exit_codes: [0]` is services.toml's on-failure; other codes cannot be said.
    fn stop_exit_codes(&mut self, svc: &mut Service, v: &Node) {
        let zero_only = match &v.data {
            Data::Num(n) => *n == 0.0,
            Data::List(codes) => codes.len() == 1 && codes[0].data == Data::Num(0.0),
            _ => false,
        };
        if zero_only {
            if svc.restart == "always" {
                svc.restart = "on-failure";
            }
        } else {
            self.warn(
                v,
                "stop_exit_codes",
                "not imported: services.toml can only leave exit 0 alone (restart = \"on-failure\")",
            );
        }
    }

    fn wait_ready(&mut self, svc: &Service, v: &Node) {
        if v.data == Data::Bool(false) {
            return;
        }
        let port = match svc.env.get("PORT") {
            Some(Env::Plain(p)) if p.parse::<u16>().is_ok() => p.clone(),
            _ => "PORT".to_owned(),
        };
        let message = format!(
            "not imported: process.send('ready') is not sd_notify; say readiness with a health check, e.g. \
             health = {{ http = \"http://127.0.0.1:{port}/health\" }}, {{ tcp = \"127.0.0.1:{port}\" }} or \
             {{ log = \"listening\" }} (listen_timeout becomes startup_timeout)"
        );
        self.warn(v, "wait_ready", &message);
    }

    fn instances(&mut self, v: &Node) {
        if !matches!(v.data, Data::Num(n) if whole(n) == Ok(1)) {
            self.warn(v, "instances", "not imported: the supervisor runs one instance of each service");
        }
    }
}

/// PM2's interpreter for a script's extension; none runs the script itself.
fn default_interpreter(script: &str) -> Option<&'static str> {
    let ext = std::path::Path::new(script).extension()?.to_str()?;
    Some(match ext {
        "js" | "mjs" | "cjs" => "node",
        "ts" | "tsx" => "ts-node",
        "sh" => "bash",
        "py" => "python",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        "coffee" => "coffee",
        _ => return None,
    })
}

/// An environment variable whose name says it holds a secret.
pub(crate) fn looks_secret(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "PRIVATE", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// Known PM2 keys services.toml has no form for, with what to do instead.
fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => {
            "not imported: the supervisor does not restart on file changes (deploy with `switch`, or `restart`)"
        }
        "cron_restart" => {
            "not imported: no scheduled restarts (a systemd timer can run `titan-supervisor restart`)"
        }
        "merge_logs" | "combine_logs" | "log_date_format" | "error_file" | "err_file" | "out_file"
        | "log_file" | "log" | "log_type" | "time" | "disable_logs" => {
            "not imported: the supervisor captures output into <log_dir>/<service>/ (`titan-supervisor logs`)"
        }
        "pid_file" | "pid" => "not imported: no pid files (`titan-supervisor status --json` has the pid)",
        "source_map_support" | "disable_source_map_support" => {
            "not imported: give node --enable-source-maps in interpreter_args instead"
        }
        "gid" => "not imported: a native service runs with its user's groups",
        "autostart" => "not imported: the supervisor starts every service (`stop` holds one stopped)",
        "kill_retry_time" | "shutdown_with_message" | "treekill" => {
            "not imported: the supervisor sends stop_signal, then SIGKILL after stop_timeout"
        }
        "vizion" | "post_update" | "force" | "increment_var" | "instance_var" | "namespace" | "version"
        | "append_env_to_name" | "filter_env" | "automation" | "pmx" | "trace" | "disable_trace"
        | "deep_monitoring" => "has no services.toml equivalent: not imported",
        _ => return None,
    })
}
