//! The test service's command line: a hand-written parser (no clap, startup must stay fast) that
//! turns `--option VALUE` / `--option=VALUE` arguments into [`Opts`], or a [`UsageError`].

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Printed by `--help`.
pub(crate) const USAGE: &str = "\
usage: titan-supervisor test-service [OPTIONS]

A tiny stand-in service for tests, benchmarks and the demo.

  --name NAME             tag used in output lines (default: svc)
  --listen ADDR           serve HTTP on ADDR: GET /health, GET /policy
  --bind-early            bind --listen at start and answer 503 until ready
  --policy-hash VALUE     value reported by GET /policy (default: demo)
  --ready-after DUR       become ready DUR after start (default: 0)
  --ready-line TEXT       line printed at readiness (default: ready)
  --notify                send READY=1 to $NOTIFY_SOCKET at readiness
  --exit-after DUR        exit DUR after start, with --exit-code N (default: 0)
  --exit-code N           exit code for --exit-after (0-255)
  --abort-after DUR       abort (die by SIGABRT) DUR after start
  --ignore-sigterm        ignore SIGTERM and SIGINT
  --term-delay DUR        on SIGTERM/SIGINT, exit 0 after DUR (default: 0)
  --alloc MIB             allocate and touch MIB MiB
  --alloc-step MIB        ... growing by MIB MiB every --alloc-interval DUR
  --alloc-interval DUR
  --lines N               print N numbered lines (0: forever)
  --line-bytes M          bytes per line, newline included (default: 64)
  --rate R                lines per second (default: 0, as fast as possible)
  --stream out|err|both   where lines go (default: out; both alternates)
  --lines-exit            exit 0 right after the last line
  --fork-children N       fork N children that sleep until killed
  --orphans N             create N orphaned grandchildren (double fork)
  --print-env             print the environment sorted by key, then `--- env end`
  --start-log FILE        append `NAME start|ready UNIX_NANOS` lines to FILE
  --pid-file FILE         write the pid to FILE
  --help                  print this help

  --check-http URL        alone: GET URL once, exit 0 on a 2xx answer, 1 otherwise
                          (a health check for images without a shell or curl)
";

/// Default size of a numbered line, newline included.
const DEFAULT_LINE_BYTES: usize = 64;
/// Upper bounds that keep typos from allocating the machine away.
const MAX_LINE_BYTES: usize = 64 << 20;
const MAX_PROCS: u32 = 4096;

/// Where numbered lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
    Both,
}

/// `--lines` and its companions.
#[derive(Debug, Clone)]
pub(crate) struct Lines {
    /// Number of lines; 0 means forever.
    pub(crate) count: u64,
    /// Exact size of every line, newline included.
    pub(crate) bytes: usize,
    /// Lines per second; 0 means as fast as possible.
    pub(crate) rate: f64,
    pub(crate) stream: Stream,
    /// Exit 0 right after the last line.
    pub(crate) exit: bool,
}

/// `--alloc` and its companions.
#[derive(Debug, Clone)]
pub(crate) struct Alloc {
    pub(crate) total_mib: u64,
    /// Growth per step; equals `total_mib` when allocating all at once.
    pub(crate) step_mib: u64,
    pub(crate) interval: Duration,
}

/// Everything the test service was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub(crate) name: String,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) bind_early: bool,
    pub(crate) policy_hash: String,
    pub(crate) ready_after: Duration,
    pub(crate) ready_line: String,
    pub(crate) notify: bool,
    pub(crate) exit_after: Option<Duration>,
    pub(crate) exit_code: i32,
    pub(crate) abort_after: Option<Duration>,
    pub(crate) ignore_sigterm: bool,
    pub(crate) term_delay: Duration,
    pub(crate) alloc: Option<Alloc>,
    pub(crate) lines: Option<Lines>,
    pub(crate) fork_children: u32,
    pub(crate) orphans: u32,
    pub(crate) print_env: bool,
    pub(crate) start_log: Option<PathBuf>,
    pub(crate) pid_file: Option<PathBuf>,
}

/// Outcome of a successful parse.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Box<Opts>),
    Help,
    /// `--check-http URL`: a one-shot health check instead of a service.
    CheckHttp(String),
}

/// A bad command line; displays as `test-service: <option>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError {
    pub(crate) option: String,
    pub(crate) problem: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test-service: {}: {}", self.option, self.problem)
    }
}

impl std::error::Error for UsageError {}

fn usage(option: &str, problem: impl Into<String>) -> UsageError {
    UsageError { option: option.to_owned(), problem: problem.into() }
}

/// Options as given, before defaults and cross-checks.
#[derive(Debug, Default)]
struct Raw {
    name: Option<String>,
    listen: Option<SocketAddr>,
    bind_early: bool,
    policy_hash: Option<String>,
    ready_after: Option<Duration>,
    ready_line: Option<String>,
    notify: bool,
    exit_after: Option<Duration>,
    exit_code: Option<i32>,
    abort_after: Option<Duration>,
    ignore_sigterm: bool,
    term_delay: Option<Duration>,
    alloc: Option<u64>,
    alloc_step: Option<u64>,
    alloc_interval: Option<Duration>,
    lines: Option<u64>,
    line_bytes: Option<usize>,
    rate: Option<f64>,
    stream: Option<Stream>,
    lines_exit: bool,
    fork_children: Option<u32>,
    orphans: Option<u32>,
    print_env: bool,
    start_log: Option<PathBuf>,
    pid_file: Option<PathBuf>,
}

/// The options that take a value (all handled by `set_value`).
const VALUED: [&str; 20] = [
    "--name",
    "--listen",
    "--policy-hash",
    "--ready-after",
    "--ready-line",
    "--exit-after",
    "--exit-code",
    "--abort-after",
    "--term-delay",
    "--alloc",
    "--alloc-step",
    "--alloc-interval",
    "--lines",
    "--line-bytes",
    "--rate",
    "--stream",
    "--fork-children",
    "--orphans",
    "--start-log",
    "--pid-file",
];

/// Parses the arguments after `test-service`.
pub(crate) fn parse(args: &[OsString]) -> Result<Parsed, UsageError> {
    let mut raw = Raw::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg.to_str().ok_or_else(|| usage(&arg.to_string_lossy(), "not valid UTF-8"))?;
        let (flag, inline) = split_inline(arg);
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        if flag == "--check-http" {
            let url = match inline {
                Some(v) => v,
                None => next_value(flag, &mut it)?,
            };
            if args.len() != if inline.is_some() { 1 } else { 2 } {
                return Err(usage(flag, "takes no other option"));
            }
            return Ok(Parsed::CheckHttp(url.to_owned()));
        }
        if set_switch(&mut raw, flag)? {
            if inline.is_some() {
                return Err(usage(flag, "takes no value"));
            }
            continue;
        }
        if !flag.starts_with('-') {
            return Err(usage(flag, "unexpected argument"));
        }
        if !VALUED.contains(&flag) {
            return Err(usage(flag, "unknown option (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => next_value(flag, &mut it)?,
        };
        set_value(&mut raw, flag, value)?;
    }
    raw.finish().map(|o| Parsed::Run(Box::new(o)))
}

/// Splits `--opt=value` into (`--opt`, `value`); anything else is returned whole.
fn split_inline(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
        _ => (arg, None),
    }
}

fn next_value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a OsString>) -> Result<&'a str, UsageError> {
    let value = it.next().ok_or_else(|| usage(flag, "missing value"))?;
    value.to_str().ok_or_else(|| usage(flag, "value is not valid UTF-8"))
}

/// Sets a value-less option; returns false if `flag` is not one.
fn set_switch(raw: &mut Raw, flag: &str) -> Result<bool, UsageError> {
    let slot = match flag {
        "--bind-early" => &mut raw.bind_early,
        "--notify" => &mut raw.notify,
        "--ignore-sigterm" => &mut raw.ignore_sigterm,
        "--lines-exit" => &mut raw.lines_exit,
        "--print-env" => &mut raw.print_env,
        _ => return Ok(false),
    };
    *slot = true;
    Ok(true)
}

/// Sets an option that takes a value.
fn set_value(raw: &mut Raw, flag: &str, v: &str) -> Result<(), UsageError> {
    match flag {
        "--name" => raw.name = Some(name(flag, v)?),
        "--listen" => raw.listen = Some(addr(flag, v)?),
        "--policy-hash" => raw.policy_hash = Some(v.to_owned()),
        "--ready-after" => raw.ready_after = Some(duration(flag, v)?),
        "--ready-line" => raw.ready_line = Some(one_line(flag, v)?),
        "--exit-after" => raw.exit_after = Some(duration(flag, v)?),
        "--exit-code" => raw.exit_code = Some(exit_code(flag, v)?),
        "--abort-after" => raw.abort_after = Some(duration(flag, v)?),
        "--term-delay" => raw.term_delay = Some(duration(flag, v)?),
        "--alloc" => raw.alloc = Some(number(flag, v)?),
        "--alloc-step" => raw.alloc_step = Some(positive(flag, v)?),
        "--alloc-interval" => raw.alloc_interval = Some(duration(flag, v)?),
        "--lines" => raw.lines = Some(number(flag, v)?),
        "--line-bytes" => raw.line_bytes = Some(number(flag, v)?),
        "--rate" => raw.rate = Some(rate(flag, v)?),
        "--stream" => raw.stream = Some(stream(flag, v)?),
        "--fork-children" => raw.fork_children = Some(procs(flag, v)?),
        "--orphans" => raw.orphans = Some(procs(flag, v)?),
        "--start-log" => raw.start_log = Some(path(flag, v)?),
        "--pid-file" => raw.pid_file = Some(path(flag, v)?),
        _ => return Err(usage(flag, "unknown option (see --help)")),
    }
    Ok(())
}

fn name(flag: &str, v: &str) -> Result<String, UsageError> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(usage(flag, format!("{v:?} must be non-empty without whitespace")));
    }
    Ok(v.to_owned())
}

fn one_line(flag: &str, v: &str) -> Result<String, UsageError> {
    if v.contains(['\n', '\r']) {
        return Err(usage(flag, "must not contain a line break"));
    }
    Ok(v.to_owned())
}

fn addr(flag: &str, v: &str) -> Result<SocketAddr, UsageError> {
    if let Ok(a) = v.parse() {
        return Ok(a);
    }
    let mut found = v.to_socket_addrs().map_err(|e| usage(flag, format!("invalid address {v:?}: {e}")))?;
    found.next().ok_or_else(|| usage(flag, format!("{v:?} resolves to no address")))
}

fn duration(flag: &str, v: &str) -> Result<Duration, UsageError> {
    humantime::parse_duration(v).map_err(|e| usage(flag, format!("invalid duration {v:?}: {e}")))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, UsageError>
where
    T::Err: fmt::Display,
{
    v.parse().map_err(|e| usage(flag, format!("invalid number {v:?}: {e}")))
}

fn positive(flag: &str, v: &str) -> Result<u64, UsageError> {
    match number(flag, v)? {
        0 => Err(usage(flag, "must be at least 1")),
        n => Ok(n),
    }
}

fn procs(flag: &str, v: &str) -> Result<u32, UsageError> {
    match number(flag, v)? {
        n if n > MAX_PROCS => Err(usage(flag, format!("{n} is more than {MAX_PROCS}"))),
        n => Ok(n),
    }
}

fn exit_code(flag: &str, v: &str) -> Result<i32, UsageError> {
    match number(flag, v)? {
        n @ 0..=255 => Ok(n),
        n => Err(usage(flag, format!("{n} is not in 0-255"))),
    }
}

fn rate(flag: &str, v: &str) -> Result<f64, UsageError> {
    match number::<f64>(flag, v)? {
        r if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(usage(flag, format!("{v:?} must be a finite number >= 0"))),
    }
}

fn stream(flag: &str, v: &str) -> Result<Stream, UsageError> {
    match v {
        "out" => Ok(Stream::Out),
        "err" => Ok(Stream::Err),
        "both" => Ok(Stream::Both),
        _ => Err(usage(flag, format!("{v:?} is not one of out, err, both"))),
    }
}

fn path(flag: &str, v: &str) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return Err(usage(flag, "empty path"));
    }
    Ok(PathBuf::from(v))
}

/// Fails if `option` was given without the option it depends on.
fn requires(option: &str, given: bool, needs: &str, present: bool) -> Result<(), UsageError> {
    match given && !present {
        true => Err(usage(option, format!("requires {needs}"))),
        false => Ok(()),
    }
}

/// The length of a numbered line's header (`<name> <stream> <seq:010> `).
pub(crate) fn line_header_len(name: &str) -> usize {
    name.len() + " out ".len() + 10 + 1
}

impl Raw {
    /// Applies defaults and checks that dependent options come with what they depend on.
    fn finish(self) -> Result<Opts, UsageError> {
        self.check_requires()?;
        let name = self.name.clone().unwrap_or_else(|| "svc".to_owned());
        Ok(Opts {
            alloc: self.alloc_opts(),
            lines: self.lines_opts(&name)?,
            listen: self.listen,
            bind_early: self.bind_early,
            policy_hash: self.policy_hash.unwrap_or_else(|| "demo".to_owned()),
            ready_after: self.ready_after.unwrap_or_default(),
            ready_line: self.ready_line.unwrap_or_else(|| "ready".to_owned()),
            notify: self.notify,
            exit_after: self.exit_after,
            exit_code: self.exit_code.unwrap_or(0),
            abort_after: self.abort_after,
            ignore_sigterm: self.ignore_sigterm,
            term_delay: self.term_delay.unwrap_or_default(),
            fork_children: self.fork_children.unwrap_or(0),
            orphans: self.orphans.unwrap_or(0),
            print_env: self.print_env,
            start_log: self.start_log,
            pid_file: self.pid_file,
            name,
        })
    }

    fn check_requires(&self) -> Result<(), UsageError> {
        let lines = self.lines.is_some();
        let step = self.alloc_step.is_some();
        let interval = self.alloc_interval.is_some();
        let (listen, exit_after) = (self.listen.is_some(), self.exit_after.is_some());
        requires("--bind-early", self.bind_early, "--listen", listen)?;
        let code = self.exit_code.is_some();
        requires("--exit-code", code, "--exit-after", exit_after)?;
        requires("--alloc-step", step, "--alloc", self.alloc.is_some())?;
        requires("--alloc-step", step, "--alloc-interval", interval)?;
        requires("--alloc-interval", interval, "--alloc-step", step)?;
        requires("--line-bytes", self.line_bytes.is_some(), "--lines", lines)?;
        requires("--rate", self.rate.is_some(), "--lines", lines)?;
        requires("--stream", self.stream.is_some(), "--lines", lines)?;
        requires("--lines-exit", self.lines_exit, "--lines", lines)
    }

    fn alloc_opts(&self) -> Option<Alloc> {
        let total_mib = self.alloc?;
        Some(Alloc {
            total_mib,
            step_mib: self.alloc_step.unwrap_or(total_mib).min(total_mib),
            interval: self.alloc_interval.unwrap_or_default(),
        })
    }

    fn lines_opts(&self, name: &str) -> Result<Option<Lines>, UsageError> {
        let Some(count) = self.lines else {
            return Ok(None);
        };
        let bytes = self.line_bytes.unwrap_or(DEFAULT_LINE_BYTES);
        let min = line_header_len(name) + 1;
        if bytes < min {
            let problem = format!("{bytes} is too small: lines named {name:?} need at least {min}");
            return Err(usage("--line-bytes", problem));
        }
        if bytes > MAX_LINE_BYTES {
            return Err(usage("--line-bytes", format!("{bytes} is more than {MAX_LINE_BYTES}")));
        }
        Ok(Some(Lines {
            count,
            bytes,
            rate: self.rate.unwrap_or(0.0),
            stream: self.stream.unwrap_or(Stream::Out),
            exit: self.lines_exit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Opts, UsageError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&args)? {
            Parsed::Run(o) => Ok(*o),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o.name, "svc");
        assert_eq!(o.ready_line, "ready");
        assert_eq!(o.policy_hash, "demo");
        assert_eq!(o.ready_after, Duration::ZERO);
        assert!(o.lines.is_none() && o.alloc.is_none() && o.listen.is_none());
    }

    #[test]
    fn values_both_spellings() {
        let o = run(&["--name=api", "--ready-after", "1.5s", "--listen=127.0.0.1:80"]).unwrap();
        assert_eq!(o.name, "api");
        assert_eq!(o.ready_after, Duration::from_millis(1500));
        assert_eq!(o.listen, Some("127.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_option() {
        let cases: [(&[&str], &str); 9] = [
            (&["--bogus"], "--bogus"),
            (&["--bogus=1"], "--bogus"),
            (&["--name"], "--name"),
            (&["--ready-after", "soon"], "--ready-after"),
            (&["--exit-code", "300", "--exit-after", "1s"], "--exit-code"),
            (&["--lines", "1", "--line-bytes", "5"], "--line-bytes"),
            (&["--notify=yes"], "--notify"),
            (&["--rate", "2"], "--rate"),
            (&["stray"], "stray"),
        ];
        for (args, option) in cases {
            let err = run(args).unwrap_err();
            assert_eq!(err.option, option, "{args:?}: {err}");
        }
    }

    #[test]
    fn line_bytes_minimum_is_header_plus_newline() {
        let min = line_header_len("svc") + 1;
        assert!(run(&["--lines", "1", "--line-bytes", &min.to_string()]).is_ok());
        let short = (min - 1).to_string();
        assert!(run(&["--lines", "1", "--line-bytes", &short]).is_err());
    }

    #[test]
    fn every_valued_option_is_handled() {
        for flag in VALUED {
            let err = set_value(&mut Raw::default(), flag, "\u{1}").err();
            assert!(err.is_none_or(|e| !e.problem.starts_with("unknown")), "{flag}");
        }
    }

    #[test]
    fn check_http_stands_alone() {
        let parse_strs = |a: &[&str]| parse(&a.iter().map(OsString::from).collect::<Vec<_>>());
        for args in [&["--check-http", "http://h:1/x"][..], &["--check-http=http://h:1/x"]] {
            assert!(matches!(parse_strs(args), Ok(Parsed::CheckHttp(u)) if u == "http://h:1/x"), "{args:?}");
        }
        assert_eq!(parse_strs(&["--check-http"]).unwrap_err().option, "--check-http");
        let mixed = parse_strs(&["--check-http", "http://h:1/", "--name", "a"]).unwrap_err();
        assert_eq!(mixed.option, "--check-http");
    }

    #[test]
    fn help_wins() {
        let args = [OsString::from("--help")];
        assert!(matches!(parse(&args), Ok(Parsed::Help)));
    }
}
