//! The converted apps written as services.toml text: a header naming the source, `[defaults]`
//! for pm2-logrotate's settings, then one `[services.<name>]` per app in the file's order with
//! its keys in a fixed order. Values go through toml_edit, so quoting is never done by hand;
//! `$` in text that services.toml interpolates is doubled so it stays literal.

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use super::Logs;
use super::app::{Env, Service};
use super::values::{duration_text, size_text};

pub(crate) fn render(file: &str, env: Option<&str>, logs: &Logs, services: &[Service]) -> String {
    let mut doc = DocumentMut::new();
    if *logs != Logs::default() {
        let mut defaults = Table::new();
        defaults.insert("logs", value(logs_table(logs)));
        defaults.decor_mut().set_prefix("# from pm2-logrotate\n");
        doc.insert("defaults", Item::Table(defaults));
    }
    let mut all = Table::new();
    all.set_implicit(true);
    for svc in services {
        all.insert(&svc.name, Item::Table(service(svc)));
    }
    doc.insert("services", Item::Table(all));
    let env_line = match env {
        Some(name) => format!("# With --env {name}: env_{name} merged over env.\n"),
        None => String::new(),
    };
    format!(
        "# Imported from {file} by `titan-supervisor import-pm2`.\n{env_line}\
         # PM2 restarts an app whenever it exits: restart = \"always\" unless autorestart was false.\n\
         # PM2 has no start order: add group and depends_on (tiers) to gate each service on the ones it needs.\n\
         # Review the warnings it printed; secrets are ${{VAR}} references for [supervisor] env_file.\n\n{doc}"
    )
}

fn service(svc: &Service) -> Table {
    let mut t = Table::new();
    t.insert("command", value(Array::from_iter(svc.command.iter().map(|a| literal(a)))));
    if let Some(cwd) = &svc.cwd {
        t.insert("cwd", value(cwd.as_str()));
    }
    if let Some(user) = &svc.user {
        t.insert("user", value(user.as_str()));
    }
    t.insert("restart", value(svc.restart));
    if let Some(n) = svc.max_restarts {
        t.insert("max_restarts", value(i64::from(n)));
    }
    for (key, d) in [
        ("min_uptime", svc.min_uptime),
        ("stop_timeout", svc.stop_timeout),
        ("startup_timeout", svc.startup_timeout),
    ] {
        if let Some(d) = d {
            t.insert(key, value(duration_text(d)));
        }
    }
    if let Some(b) = &svc.backoff {
        let mut inline = InlineTable::new();
        inline.insert("initial", duration_text(b.initial).into());
        inline.insert("max", duration_text(b.max).into());
        t.insert("backoff", value(inline));
        if let Some(mut key) = t.key_mut("backoff") {
            key.leaf_decor_mut().set_prefix(format!("# {}\n", b.why));
        }
    }
    if let Some(bytes) = svc.memory_restart {
        t.insert("memory_restart", value(size_text(bytes)));
    }
    if !svc.env.is_empty() {
        t.insert("env", Item::Table(env_table(svc)));
    }
    t
}

fn env_table(svc: &Service) -> Table {
    let mut env = Table::new();
    for (key, v) in &svc.env {
        let text = match v {
            Env::Plain(text) => literal(text),
            Env::Secret => format!("${{{key}}}"),
        };
        env.insert(key, value(text));
    }
    env
}

fn logs_table(logs: &Logs) -> InlineTable {
    let mut t = InlineTable::new();
    if let Some(b) = logs.max_size {
        t.insert("max_size", size_text(b).into());
    }
    if let Some(n) = logs.max_files {
        t.insert("max_files", i64::from(n).into());
    }
    if let Some(c) = logs.compress {
        t.insert("compress", c.into());
    }
    t
}

/// Text services.toml interpolates (`command`, `env`), kept literal: `$` becomes `$$`.
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}
