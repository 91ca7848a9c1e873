//! `/metrics` in Prometheus text format (prometheus-client): per service its state, up,
//! restarts by reason, last exit code, uptime, memory, health probe durations and failures,
//! log bytes, lines, rotations and dropped lines; the supervisor's build and own RSS.
//! Counters move as things happen; gauges are refreshed from the actor's state at scrape.
//! Rendered as OpenMetrics, and turned into the classic text format for scrapers that do not
//! ask for OpenMetrics (`Format`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::supervisor::status::{DockerdState, ServiceStatus, StateKind};

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn service(name: &str) -> Labels {
    vec![("service".into(), name.into())]
}

fn probe_buckets() -> Histogram {
    // 0.1 ms .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Counters of one service's log, shared with its writer on the log thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogCounters {
    pub(crate) bytes: Counter,
    pub(crate) lines: Counter,
    pub(crate) rotations: Counter,
    pub(crate) dropped: Counter,
}

pub(crate) struct Metrics {
    registry: Registry,
    up: Family<Labels, Gauge>,
    state: Family<Labels, Gauge>,
    restarts: Family<Labels, Counter>,
    last_exit: Family<Labels, Gauge>,
    uptime: Family<Labels, FloatGauge>,
    memory: Family<Labels, Gauge>,
    /// 1 while dockerd answers, per container service and for the daemon.
    dockerd: Family<Labels, Gauge>,
    dockerd_up: Family<Labels, Gauge>,
    probe_seconds: Histograms,
    probe_failures: Family<Labels, Counter>,
    log_bytes: Family<Labels, Counter>,
    log_lines: Family<Labels, Counter>,
    log_rotations: Family<Labels, Counter>,
    log_dropped: Family<Labels, Counter>,
    rss: Gauge,
    /// The NATS link's counters, with `[nats]`.
    nats: Option<std::sync::Arc<crate::nats::Stats>>,
    nats_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            up: Family::default(),
            state: Family::default(),
            restarts: Family::default(),
            last_exit: Family::default(),
            uptime: Family::default(),
            memory: Family::default(),
            dockerd: Family::default(),
            dockerd_up: Family::default(),
            probe_seconds: Family::new_with_constructor(probe_buckets as fn() -> Histogram),
            probe_failures: Family::default(),
            log_bytes: Family::default(),
            log_lines: Family::default(),
            log_rotations: Family::default(),
            log_dropped: Family::default(),
            rss: Gauge::default(),
            nats: None,
            nats_up: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "titan_service_up",
            "1 when the service is ready (healthy, or a oneshot that exited 0)",
            m.up.clone(),
        );
        r.register("titan_service_state", "1 for the state the service is in", m.state.clone());
        r.register("titan_service_restarts", "Restarts by reason", m.restarts.clone());
        r.register(
            "titan_service_last_exit_code",
            "Exit code of the last run (128+N for signal N)",
            m.last_exit.clone(),
        );
        r.register("titan_service_uptime_seconds", "Seconds since the current run started", m.uptime.clone());
        r.register(
            "titan_service_memory_bytes",
            "RSS of the service's processes (services with memory_restart)",
            m.memory.clone(),
        );
        r.register(
            "titan_service_dockerd_reachable",
            "1 while dockerd answers (container services; at 0 the state is the last one known)",
            m.dockerd.clone(),
        );
        r.register(
            "titan_supervisor_dockerd_up",
            "1 while dockerd answers and the project is ours on it (with container services)",
            m.dockerd_up.clone(),
        );
        r.register("titan_health_probe_duration_seconds", "Health probe durations", m.probe_seconds.clone());
        r.register("titan_health_probe_failures", "Failed health probes", m.probe_failures.clone());
        r.register("titan_log_bytes", "Bytes written to the service's log", m.log_bytes.clone());
        r.register("titan_log_lines", "Records written to the service's log", m.log_lines.clone());
        r.register("titan_log_rotations", "Log files rotated away", m.log_rotations.clone());
        r.register("titan_log_dropped_lines", "Log records lost to failed writes", m.log_dropped.clone());
        let build: Family<Labels, Gauge> = Family::default();
        build.get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())]).set(1);
        r.register("titan_supervisor_build_info", "The running build", build);
        r.register("titan_supervisor_resident_memory_bytes", "RSS of the supervisor itself", m.rss.clone());
        Metrics { registry: r, ..m }
    }

    /// Shows the NATS link: connected or not, events published, dropped, queued.
    pub(crate) fn watch_nats(&mut self, stats: std::sync::Arc<crate::nats::Stats>) {
        let r = &mut self.registry;
        r.register("titan_supervisor_nats_up", "1 while the NATS link is connected", self.nats_up.clone());
        r.register("titan_supervisor_nats_published", "Events published on NATS", stats.published.clone());
        r.register(
            "titan_supervisor_nats_dropped",
            "Events dropped while NATS was away (queue full)",
            stats.dropped.clone(),
        );
        r.register("titan_supervisor_nats_queued", "Events waiting for NATS", stats.queued.clone());
        self.nats = Some(stats);
    }

    /// The counters a service's log writer moves.
    pub(crate) fn log_counters(&self, name: &str) -> LogCounters {
        let l = service(name);
        LogCounters {
            bytes: self.log_bytes.get_or_create(&l).clone(),
            lines: self.log_lines.get_or_create(&l).clone(),
            rotations: self.log_rotations.get_or_create(&l).clone(),
            dropped: self.log_dropped.get_or_create(&l).clone(),
        }
    }

    pub(crate) fn restarted(&self, name: &str, reason: &str) {
        self.restarts
            .get_or_create(&vec![("service".into(), name.into()), ("reason".into(), reason.into())])
            .inc();
    }

    pub(crate) fn exited(&self, name: &str, code: i64) {
        self.last_exit.get_or_create(&service(name)).set(code);
    }

    pub(crate) fn probed(&self, name: &str, seconds: f64, ok: bool) {
        self.probe_seconds.get_or_create(&service(name)).observe(seconds);
        if !ok {
            self.probe_failures.get_or_create(&service(name)).inc();
        }
    }

    /// The text exposition, gauges refreshed from `services` first.
    pub(crate) fn render(&self, services: &[ServiceStatus]) -> String {
        for s in services {
            let l = service(&s.name);
            self.up.get_or_create(&l).set(i64::from(s.state.is_up()));
            // each of SPEC's states a 0/1 gauge, so a dashboard can pick one
            for state in StateKind::ALL {
                let labels =
                    vec![("service".into(), s.name.clone()), ("state".into(), state.as_str().into())];
                self.state.get_or_create(&labels).set(i64::from(s.state == state));
            }
            self.uptime.get_or_create(&l).set(s.uptime_s.secs().unwrap_or(0.0));
            if let Some(m) = s.memory_bytes {
                self.memory.get_or_create(&l).set(m as i64);
            }
            if let Some(d) = s.dockerd {
                self.dockerd.get_or_create(&l).set(i64::from(d == DockerdState::Connected));
            }
        }
        if let Some(d) = services.iter().find_map(|s| s.dockerd) {
            self.dockerd_up.get_or_create(&Vec::new()).set(i64::from(d == DockerdState::Connected));
        }
        if let Some(nats) = &self.nats {
            self.nats_up.set(i64::from(nats.connected()));
        }
        self.rss.set(own_rss() as i64);
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The text formats `/metrics` answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0: what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4: what promtool checks and curl gets.
    Classic,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists it (with a q above 0), else the classic format.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let wanted = |range: &str| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused =
                parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        };
        match accept {
            Some(a) if a.split(',').any(wanted) => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `text`, an exposition as `Metrics::render` makes it, in this format.
    pub(crate) fn encode(self, text: &str) -> String {
        match self {
            Format::OpenMetrics => text.to_owned(),
            Format::Classic => classic(text),
        }
    }
}

/// The classic text format of an OpenMetrics exposition of gauges, counters and histograms:
/// a counter's HELP and TYPE name its samples (`x_total`, where OpenMetrics names the family
/// `x`), and there is no `# EOF` or `# UNIT`. Samples and label escaping are the same in both.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 8 * counters.len());
    for line in openmetrics.lines().filter(|l| *l != "# EOF" && !l.starts_with("# UNIT ")) {
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {rest}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// This process's VmRSS in bytes.
fn own_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_and_counts() {
        let m = Metrics::new();
        m.restarted("api", "crash");
        m.restarted("api", "crash");
        m.probed("api", 0.002, false);
        m.log_counters("api").lines.inc_by(3);
        let text = m.render(&[]);
        assert!(text.contains("titan_service_restarts_total{service=\"api\",reason=\"crash\"} 2"), "{text}");
        assert!(text.contains("titan_health_probe_failures_total{service=\"api\"} 1"));
        assert!(text.contains("titan_log_lines_total{service=\"api\"} 3"));
        assert!(text.contains("titan_supervisor_build_info{version=\"0.1.0\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples_and_has_no_eof() {
        let m = Metrics::new();
        m.restarted("api", "crash");
        m.probed("api", 0.002, true);
        let text = Format::Classic.encode(&m.render(&[]));
        assert!(text.contains("# HELP titan_service_restarts_total Restarts by reason.\n"), "{text}");
        assert!(text.contains("# TYPE titan_service_restarts_total counter\n"));
        assert!(text.contains("titan_service_restarts_total{service=\"api\",reason=\"crash\"} 1\n"));
        assert!(text.contains("# TYPE titan_health_probe_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE titan_supervisor_build_info gauge\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_is_served_to_scrapers_that_ask_for_it() {
        // Prometheus 2.42's Accept header
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("Application/OpenMetrics-Text")), Format::OpenMetrics);
        for classic in [None, Some("*/*"), Some("text/plain"), Some("application/openmetrics-text;q=0")] {
            assert_eq!(Format::negotiate(classic), Format::Classic, "{classic:?}");
        }
    }
}
