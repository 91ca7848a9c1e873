//! The supervisor's own log into systemd's journal. When `$JOURNAL_STREAM` names our stderr
//! (its `dev:inode` is fd 2's, systemd.exec(5)), systemd connected stderr to the journal; the
//! log then goes to journald natively instead, each tracing field a journal field of its own
//! (SERVICE, FROM, TO, REASON, RESTARTS, RELEASE, ...), so that `journalctl -u titan-supervisor
//! SERVICE=titan-brain` finds one service's lines.

/// The journald layer, when stderr is the journal and journald answers; otherwise none (the
/// log stays on stderr as it is).
pub(crate) fn layer() -> Option<tracing_journald::Layer> {
    if !stderr_is_journal() {
        return None;
    }
    match tracing_journald::layer() {
        // no `F_` prefix: fields keep their own names, upper-cased (`service` is SERVICE)
        Ok(layer) => Some(layer.with_field_prefix(None)),
        Err(e) => {
            eprintln!("titan-supervisor: stderr is the journal, but journald cannot be reached: {e}");
            None
        }
    }
}

/// Whether fd 2 is the stream `$JOURNAL_STREAM` names (not one a child inherited it beside).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else { return false };
    names(&stream, stat.st_dev, stat.st_ino)
}

/// `$JOURNAL_STREAM` is `<device>:<inode>`, both decimal.
fn names(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else { return false };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn the_journal_stream_is_ours_only_when_device_and_inode_both_match() {
        assert!(names("8:123456", 8, 123_456));
        assert!(!names("8:123457", 8, 123_456));
        assert!(!names("9:123456", 8, 123_456));
        assert!(!names("8-123456", 8, 123_456));
        assert!(!names("", 8, 123_456));
    }
}
