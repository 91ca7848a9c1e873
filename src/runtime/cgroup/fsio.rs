//! Reading and writing cgroup control files: one `write(2)` per value, errors that name the
//! file, and read-back checks that tolerate the kernel rounding memory limits to whole pages.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// At or above this a v1 memory limit means "unlimited" (the kernel shows
/// `PAGE_COUNTER_MAX * PAGE_SIZE`, 9223372036854771712 on x86_64, after writing -1).
const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

/// Writes `value` to the control file `path` (which must exist: cgroup files are made by the
/// kernel, never by us).
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_string(),
        source,
    })
}

/// Reads a control file, trimmed.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    read_io(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a control file, trimmed; the error message carries the path.
pub(super) fn read_io(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) => Err(with_path(e, path)),
    }
}

/// The same error, its message prefixed with the path (io::Error carries no path itself).
pub(super) fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// An `InvalidData` error about the content of `path`.
pub(super) fn bad_data(path: &Path, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {detail}", path.display()),
    )
}

/// The pids listed in a `cgroup.procs` file.
pub(super) fn read_pids(procs: &Path) -> io::Result<Vec<i32>> {
    let text = read_io(procs)?;
    text.lines()
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| bad_data(procs, format!("not a pid: {l:?}")))
        })
        .collect()
}

/// The value of `key` in a flat keyed file (`memory.events`, `memory.oom_control`).
pub(super) fn keyed_value(path: &Path, key: &str) -> io::Result<Option<u64>> {
    let text = read_io(path)?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            let value = words.next().and_then(|v| v.parse().ok());
            return value
                .map(Some)
                .ok_or_else(|| bad_data(path, format!("`{key}` is not followed by a number")));
        }
    }
    Ok(None)
}

/// A single number file (`memory.current`, `memory.usage_in_bytes`).
pub(super) fn number(path: &Path) -> io::Result<u64> {
    let text = read_io(path)?;
    text.parse()
        .map_err(|_| bad_data(path, format!("not a number: {text:?}")))
}

/// Writes a memory limit (`None`: unlimited, spelled `unlimited`) and checks the read-back: the
/// kernel rounds a byte limit down to a whole page.
pub(super) fn set_memory(
    path: &Path,
    max: Option<u64>,
    unlimited: &str,
) -> Result<(), CgroupError> {
    let value = max.map_or_else(|| unlimited.to_string(), |b| b.to_string());
    write(path, &value)?;
    let got = read(path)?;
    if memory_readback_ok(max, &got, page_size()) {
        return Ok(());
    }
    Err(CgroupError::Readback {
        path: path.to_owned(),
        wanted: value,
        got,
    })
}

/// Whether `got` is what the kernel shows after writing `wanted`: the same bytes rounded down
/// to a `page` multiple; for unlimited, `max`, `-1` or a v1 "unlimited" huge number.
pub(super) fn memory_readback_ok(wanted: Option<u64>, got: &str, page: u64) -> bool {
    let got_bytes = got.parse::<u64>().ok();
    match wanted {
        None => got == "max" || got == "-1" || got_bytes.is_some_and(|g| g >= V1_UNLIMITED_FLOOR),
        Some(w) if w >= V1_UNLIMITED_FLOOR && got == "max" => true,
        Some(w) => got_bytes.is_some_and(|g| g <= w && w - g < page && g % page.min(4096) == 0),
    }
}

/// Writes `value` and requires it to read back exactly (`pids.max`, `memory.swap.max`).
pub(super) fn set_exact(path: &Path, value: &str) -> Result<(), CgroupError> {
    write(path, value)?;
    let got = read(path)?;
    if got == value {
        return Ok(());
    }
    Err(CgroupError::Readback {
        path: path.to_owned(),
        wanted: value.to_string(),
        got,
    })
}

/// The system page size; 4096 if sysconf cannot say.
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// Makes the service's directory, or reuses an existing one that holds no process.
pub(super) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let procs = dir.join("cgroup.procs");
            let pids = read_pids(&procs).map_err(|source| CgroupError::Read {
                path: procs,
                source,
            })?;
            if pids.is_empty() {
                return Ok(());
            }
            Err(CgroupError::NotEmpty {
                path: dir.to_owned(),
                pids,
            })
        }
        Err(source) => Err(CgroupError::Create {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Removes the directories made so far if creation fails halfway (best effort: they are
/// empty); [`Undo::keep`] once everything is in place.
pub(super) struct Undo(Vec<PathBuf>);

impl Undo {
    pub(super) fn new() -> Self {
        Self(Vec::new())
    }

    /// Makes (or reuses) `dir` and remembers it.
    pub(super) fn make_dir(&mut self, dir: PathBuf) -> Result<(), CgroupError> {
        make_dir(&dir)?;
        self.0.push(dir);
        Ok(())
    }

    pub(super) fn keep(mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir); // best effort: the error being returned matters more
        }
    }
}

/// The path as a C string for the async-signal-safe join in a forked child.
pub(super) fn c_path(path: PathBuf) -> Result<CString, CgroupError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| CgroupError::Parse {
        what: format!("path {}", path.display()),
        detail: "contains a NUL byte".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_readback_accepts_page_rounding_only() {
        let mib32 = 32 << 20;
        assert!(memory_readback_ok(Some(mib32), "33554432", 4096));
        assert!(
            memory_readback_ok(Some(10_000), "8192", 4096),
            "rounded down to a page"
        );
        assert!(
            !memory_readback_ok(Some(10_000), "4096", 4096),
            "more than a page lower"
        );
        assert!(
            !memory_readback_ok(Some(10_000), "12288", 4096),
            "rounded up is not ours"
        );
        assert!(
            !memory_readback_ok(Some(10_000), "9000", 4096),
            "not a page multiple"
        );
        assert!(!memory_readback_ok(Some(mib32), "max", 4096));
        assert!(!memory_readback_ok(Some(mib32), "garbage", 4096));
        assert!(
            memory_readback_ok(Some(100_000), "65536", 65536),
            "64 KiB pages"
        );
    }

    #[test]
    fn memory_readback_of_unlimited() {
        assert!(memory_readback_ok(None, "max", 4096));
        assert!(memory_readback_ok(None, "-1", 4096));
        assert!(memory_readback_ok(None, "9223372036854771712", 4096));
        assert!(!memory_readback_ok(None, "33554432", 4096));
    }

    #[test]
    fn keyed_values_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        std::fs::write(
            &f,
            "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(keyed_value(&f, "oom_kill").unwrap(), Some(2));
        assert_eq!(keyed_value(&f, "oom").unwrap(), Some(3), "whole-word match");
        assert_eq!(keyed_value(&f, "absent").unwrap(), None);
        std::fs::write(&f, "oom_kill x\n").unwrap();
        let err = keyed_value(&f, "oom_kill").unwrap_err().to_string();
        assert!(
            err.contains("memory.events") && err.contains("not followed by a number"),
            "{err}"
        );
        std::fs::write(&f, "123\n").unwrap();
        assert_eq!(number(&f).unwrap(), 123);
        let err = number(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope"), "the error names the file: {err}");
    }

    #[test]
    fn pids_parse_or_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cgroup.procs");
        std::fs::write(&f, "").unwrap();
        assert!(read_pids(&f).unwrap().is_empty());
        std::fs::write(&f, "12\n345\n").unwrap();
        assert_eq!(read_pids(&f).unwrap(), [12, 345]);
        std::fs::write(&f, "12\nabc\n").unwrap();
        let err = read_pids(&f).unwrap_err().to_string();
        assert!(
            err.contains("cgroup.procs") && err.contains("\"abc\""),
            "{err}"
        );
    }
}
