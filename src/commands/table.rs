//! The status table shared by `status` and the demo: one row per service, like
//! `docker compose ps` or `pm2 ls`, the state colored on a terminal.

use std::fmt::Write;

use crate::control::proto::{ServiceStatus, StateKind};

pub(crate) fn render(services: &[ServiceStatus], color: bool) -> String {
    let name_w = services.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    let group_w = services.iter().filter_map(|s| s.group.as_ref().map(String::len)).max().unwrap_or(5).max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:name_w$}  {:group_w$}  {:9}  {:>12}  {:>8}  {:>8}  {:>9}  HEALTH",
        "NAME", "GROUP", "STATE", "PID/CONTAINER", "UPTIME", "RESTARTS", "MEMORY"
    );
    for s in services {
        let state = paint(s.state, color);
        let pad = " ".repeat(9usize.saturating_sub(s.state.as_str().len()));
        // a container shows its short id, as `docker ps` does
        let pid = match (&s.pid, &s.container_id) {
            (Some(p), _) => p.to_string(),
            (None, Some(id)) => id.chars().take(12).collect(),
            (None, None) => "-".into(),
        };
        let uptime = s.uptime_s.secs().map_or("-".into(), |u| {
            humantime::format_duration(std::time::Duration::from_secs(u as u64)).to_string()
        });
        let memory = s.memory_bytes.map_or("-".into(), |m| crate::config::units::Size(m).to_string());
        let group = s.group.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:name_w$}  {group:group_w$}  {state}{pad}  {pid:>12}  {uptime:>8}  {:>8}  {memory:>9}  {}",
            s.name,
            s.restarts,
            s.health.as_str()
        );
        if let Some(reason) = &s.reason {
            let _ = writeln!(out, "{:name_w$}  └ {reason}", "");
        }
    }
    out
}

fn paint(state: StateKind, color: bool) -> String {
    if !color {
        return state.as_str().to_owned();
    }
    let code = match state {
        StateKind::Healthy | StateKind::Exited => "32",
        StateKind::Starting | StateKind::Pending | StateKind::Stopping => "33",
        StateKind::Unhealthy | StateKind::Backoff | StateKind::Failed => "31",
        StateKind::Stopped => "2",
    };
    format!("\x1b[{code}m{state}\x1b[0m")
}
