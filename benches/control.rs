//! Control API under load: `GET /v1/status` latency with 200 services and 100 concurrent
//! clients (p50/p99), and whether that load moves restart latency (kill -9 → listening).
//! The clients are paced — each asks every `PERIOD`, like dashboards and the ops daemon do —
//! so latency is the API's own; a closed loop (each client asking again the moment it has
//! its answer) is measured too, as throughput: there latency is only queueing.
//! Run with `cargo bench --bench control`; writes the `bench:control` section of
//! BENCHMARKS.md. Measured from outside, like an operator's tooling would see it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_titan-supervisor");
const TESTSVC: &str = env!("CARGO_BIN_EXE_titan-testsvc");
const SERVICES: usize = 200;
const CLIENTS: usize = 100;
const REQUESTS_PER_CLIENT: usize = 100;
/// How often each paced client asks: 100 clients → 1000 requests a second.
const PERIOD: Duration = Duration::from_millis(100);
const KILLS: usize = 20;
const BASE_PORT: u16 = 25_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("titan-bench-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut sup = start(&dir);
    let socket = dir.join("s.sock");
    wait_all_up(&socket);

    let latencies = status_load(&socket, CLIENTS, REQUESTS_PER_CLIENT, Some(PERIOD));
    let t = Instant::now();
    let saturated = status_load(&socket, CLIENTS, REQUESTS_PER_CLIENT, None);
    let throughput = saturated.len() as f64 / t.elapsed().as_secs_f64();
    let idle_restarts = restarts(&dir);
    let busy = Arc::new(AtomicBool::new(true));
    let load = {
        let (socket, busy) = (socket.clone(), Arc::clone(&busy));
        std::thread::spawn(move || {
            let mut all = Vec::new();
            while busy.load(Ordering::Relaxed) {
                all.extend(status_load(&socket, CLIENTS, 10, Some(PERIOD)));
            }
            all
        })
    };
    let loaded_restarts = restarts(&dir);
    busy.store(false, Ordering::Relaxed);
    let _ = load.join();

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = sup.wait();
    let _ = std::fs::remove_dir_all(&dir);
    report(&latencies, (&saturated, throughput), &idle_restarts, &loaded_restarts);
}

fn start(dir: &Path) -> Child {
    let mut text = String::from(
        "[supervisor]\nproject = \"benchctl\"\nlog_dir = \"logs\"\nstate_dir = \"state\"\nsocket = \"s.sock\"\n\n\
         [defaults]\nrestart = \"always\"\nmax_restarts = 1000\nbackoff = { initial = \"0ms\", max = \"1s\" }\n\
         health = { interval = \"1s\", timeout = \"500ms\", start_interval = \"5ms\" }\n\n",
    );
    for i in 0..SERVICES {
        let port = BASE_PORT + i as u16;
        text += &format!(
            "[services.s{i:03}]\ncommand = [\"{TESTSVC}\", \"--name\", \"s{i:03}\", \"--listen\", \"127.0.0.1:{port}\", \"--pid-file\", \"{}/s{i:03}.pid\"]\nhealth = {{ http = \"http://127.0.0.1:{port}/health\" }}\n\n",
            dir.display()
        );
    }
    std::fs::write(dir.join("services.toml"), text).expect("config");
    Command::new(SUPERVISOR)
        .args(["run", "--config"])
        .arg(dir.join("services.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start titan-supervisor")
}

/// One `GET path` on a fresh connection; returns the status line's code and the body.
fn get(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut s = UnixStream::connect(socket).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let code = reply.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, reply))
}

fn wait_all_up(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, body)) = get(socket, "/v1/status") {
            if body.matches("\"state\":\"healthy\"").count() == SERVICES {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the {SERVICES} services did not come up");
}

/// `clients` threads each sending `per_client` status requests, one every `period` (spread
/// evenly over the first period) or back to back; every latency.
fn status_load(socket: &Path, clients: usize, per_client: usize, period: Option<Duration>) -> Vec<Duration> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let start =
                        Instant::now() + period.map_or(Duration::ZERO, |p| p * c as u32 / clients as u32);
                    (0..per_client)
                        .filter_map(|k| {
                            if let Some(p) = period {
                                let due = start + p * k as u32;
                                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            }
                            let t = Instant::now();
                            matches!(get(socket, "/v1/status"), Some((200, _))).then(|| t.elapsed())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// kill -9 → the port answers again, for `KILLS` services that have run over a second.
fn restarts(dir: &Path) -> Vec<Duration> {
    let mut out = Vec::new();
    for k in 0..KILLS {
        let i = (k * 7) % SERVICES;
        let pid_file: PathBuf = dir.join(format!("s{i:03}.pid"));
        std::thread::sleep(Duration::from_millis(1100)); // each killed service has run > 1 s
        let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let port = BASE_PORT + i as u16;
        let t = Instant::now();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        // wait until every thread of the old process is gone (its listener thread can answer
        // for a moment after the main thread died), then for the port to answer again
        while std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|mut d| d.next().is_some()) {
            std::hint::spin_loop();
        }
        let deadline = t + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        out.push(t.elapsed());
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(latencies: &[Duration], saturated: (&[Duration], f64), idle: &[Duration], loaded: &[Duration]) {
    let sort = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let (l, i, b) = (sort(latencies), sort(idle), sort(loaded));
    let (s, throughput) = (sort(saturated.0), saturated.1);
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let section = format!(
        "<!-- bench:control -->\n## Control API under load (titan-supervisor)\n\n\
         Produced by `cargo bench --bench control` on {cpus} CPUs ({machine}). {SERVICES} services up, each probed over HTTP every 1 s.\n\
         PM2 and supervisord have no comparable API (their CLIs take hundreds of milliseconds per call), so no peer row.\n\
         `/v1/status` is answered on the API's own thread from the snapshot the actor posts on every change; a rendered body is served again for up to 10 ms while nothing changed (its uptimes are then at most 10 ms old).\n\n\
         | measure | samples | p50 | p99 | max | target |\n|---|---|---|---|---|---|\n\
         | `GET /v1/status` ({SERVICES} services), {CLIENTS} concurrent clients each asking every {PERIOD:?} (1000/s), new connection per request | {} | {:.3} ms | {:.3} ms | {:.3} ms | p99 ≤ 1 ms: **{}** |\n\
         | same, {CLIENTS} clients in a closed loop (saturation: {throughput:.0} requests/s; latency here is queueing) | {} | {:.3} ms | {:.3} ms | {:.3} ms | |\n\
         | kill -9 → listening, no API load | {} | {:.2} ms | {:.2} ms | {:.2} ms | |\n\
         | kill -9 → listening, the {CLIENTS} paced clients asking `/v1/status` | {} | {:.2} ms | {:.2} ms | {:.2} ms | no measurable effect: **{}** |\n\n\
         <!-- /bench:control -->\n",
        l.len(),
        pct(&l, 0.5),
        pct(&l, 0.99),
        pct(&l, 1.0),
        if pct(&l, 0.99) <= 1.0 { "met" } else { "missed" },
        s.len(),
        pct(&s, 0.5),
        pct(&s, 0.99),
        pct(&s, 1.0),
        i.len(),
        pct(&i, 0.5),
        pct(&i, 0.99),
        pct(&i, 1.0),
        b.len(),
        pct(&b, 0.5),
        pct(&b, 0.99),
        pct(&b, 1.0),
        if pct(&b, 0.5) <= pct(&i, 0.5) * 1.2 + 0.5 { "met" } else { "missed" },
    );
    print!("{section}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match (text.find("<!-- bench:control -->"), text.find("<!-- /bench:control -->")) {
        (Some(a), Some(b)) => {
            format!("{}{}{}", &text[..a], section.trim_end(), &text[b + "<!-- /bench:control -->".len()..])
        }
        _ => format!("{}\n{section}", text.trim_end()),
    };
    let _ = std::fs::write(&path, updated);
}
