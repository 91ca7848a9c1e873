//! How a process (a service's main process, an exec probe, a container's main process) ended:
//! what the reaper reads from waitpid and what Docker reports, in one type.

use std::fmt;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// Docker's exit code as a process end: above 128, a signal (137 is SIGKILL).
    pub(crate) fn of_docker(code: i64) -> Exit {
        match code {
            129..=192 => Exit::Signal((code - 128) as i32),
            c => Exit::Code(i32::try_from(c).unwrap_or(-1)),
        }
    }

    /// The shell's number for it: the code, or 128 + the signal.
    pub(crate) fn as_code(self) -> i64 {
        match self {
            Exit::Code(c) => i64::from(c),
            Exit::Signal(s) => 128 + i64::from(s),
        }
    }

    pub(crate) fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn docker_exit_codes_above_128_are_signals() {
        assert_eq!(Exit::of_docker(137), Exit::Signal(9));
        assert_eq!(Exit::of_docker(143), Exit::Signal(15));
        assert_eq!(Exit::of_docker(3), Exit::Code(3));
        assert_eq!(Exit::of_docker(-1), Exit::Code(-1));
        assert_eq!(Exit::of_docker(i64::MAX), Exit::Code(-1));
        assert_eq!(Exit::Signal(9).as_code(), 137);
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL");
    }
}
