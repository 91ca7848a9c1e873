//! Reading `/proc/PID/stat`, whose second field (the command name) may hold spaces and
//! parentheses: fields are counted after its last `)`.

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, for n ≥ 3.
pub(crate) fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(n.checked_sub(3)?)
}

/// The text of `/proc/PID/stat`.
pub(crate) fn stat(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat): with the
/// pid, it tells a process from a later one that got its number.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat_field(&stat(pid)?, 22)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_counted_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0";
        assert_eq!(super::stat_field(stat, 3), Some("S"));
        assert_eq!(super::stat_field(stat, 6), Some("42"));
        assert_eq!(super::stat_field(stat, 99), None);
    }
}
