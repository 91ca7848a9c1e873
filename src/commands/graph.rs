//! `titan-supervisor graph [FILE] [--format text|dot]`: tiers with each service's dependencies
//! and the start layers, or a Graphviz digraph clustered by group.

use std::fmt::Write;

use super::{Exit, default_config};
use crate::cli::{GraphArgs, GraphFormat};
use crate::config::{self, Config, Kind};
use crate::graph::Graph;

pub(crate) fn run(args: &GraphArgs) -> Exit {
    let path = default_config(args.file.as_deref());
    let cfg = match config::load(&path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            return Exit::Refused;
        }
    };
    let graph = match cfg.graph() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return Exit::Refused;
        }
    };
    match args.format {
        GraphFormat::Text => print!("{}", render_text(&cfg, &graph)),
        GraphFormat::Dot => print!("{}", render_dot(&cfg)),
    }
    Exit::Ok
}

/// Services of each group in `[groups] order`, then the ungrouped ones.
fn tiers(cfg: &Config) -> Vec<(Option<&str>, Vec<&str>)> {
    let mut tiers: Vec<(Option<&str>, Vec<&str>)> =
        cfg.groups.iter().map(|g| (Some(g.as_str()), Vec::new())).collect();
    let mut ungrouped = Vec::new();
    for (name, svc) in &cfg.services {
        match tiers.iter_mut().find(|(g, _)| *g == svc.group.as_deref()) {
            Some((_, members)) if svc.group.is_some() => members.push(name.as_str()),
            _ => ungrouped.push(name.as_str()),
        }
    }
    if !ungrouped.is_empty() {
        tiers.push((None, ungrouped));
    }
    tiers
}

pub(crate) fn render_text(cfg: &Config, graph: &Graph) -> String {
    let layers = graph.layers();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} services in {} groups, {} start layers\n",
        cfg.file.display(),
        cfg.services.len(),
        cfg.groups.len(),
        layers.len()
    );
    let width = cfg.services.keys().map(String::len).max().unwrap_or(0);
    for (group, members) in tiers(cfg) {
        let _ = writeln!(out, "{}", group.unwrap_or("(no group)"));
        if members.is_empty() {
            let _ = writeln!(out, "  (empty)");
        }
        for name in members {
            let svc = &cfg.services[name];
            let deps = if svc.depends_on.is_empty() {
                "(no dependencies)".to_owned()
            } else {
                format!("<- {}", svc.depends_on.join(", "))
            };
            let oneshot = if svc.kind == Kind::Oneshot { "  [oneshot]" } else { "" };
            let _ = writeln!(out, "  {name:width$}  {deps}{oneshot}");
        }
    }
    let _ = writeln!(out, "\nstart layers (each service starts as soon as its own dependencies are ready):");
    for (i, layer) in layers.iter().enumerate() {
        let _ = writeln!(out, "  {}: {}", i + 1, layer.join(", "));
    }
    out
}

pub(crate) fn render_dot(cfg: &Config) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::from("digraph services {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for (i, (group, members)) in tiers(cfg).into_iter().enumerate() {
        let indent = if group.is_some() { "    " } else { "  " };
        if let Some(g) = group {
            let _ = writeln!(out, "  subgraph {} {{\n    label={};", q(&format!("cluster_{i}_{g}")), q(g));
        }
        for name in members {
            let shape = if cfg.services[name].kind == Kind::Oneshot { " [shape=ellipse]" } else { "" };
            let _ = writeln!(out, "{indent}{}{shape};", q(name));
        }
        if group.is_some() {
            out.push_str("  }\n");
        }
    }
    for (name, svc) in &cfg.services {
        for dep in &svc.depends_on {
            let _ = writeln!(out, "  {} -> {};", q(dep), q(name));
        }
    }
    out.push_str("}\n");
    out
}
