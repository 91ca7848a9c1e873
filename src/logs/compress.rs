//! Compression off the hot path: one background thread gzips rotated files and then applies
//! retention. A file is compressed to `<name>.log.gz.tmp`, synced, renamed to `<name>.log.gz`
//! (atomic), and only then is the plain file removed — so a crash at any point leaves either
//! the plain file or a complete `.gz`, never a truncated one. `recover` finishes what a crash
//! interrupted.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::rotated;
use crate::runtime::files;

/// A file rotated away, and the service's retention settings.
pub struct Job {
    pub path: PathBuf,
    pub service: String,
    pub compress: bool,
    pub retain: Duration,
    pub max_files: u32,
}

/// The handle to the compression thread.
#[derive(Clone)]
pub struct Compressor {
    tx: mpsc::Sender<Job>,
}

impl Compressor {
    pub fn start() -> io::Result<Compressor> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("titan-gzip".into()).spawn(move || {
            lower_priority();
            for job in rx {
                run(&job);
            }
        })?;
        Ok(Compressor { tx })
    }

    pub fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

/// Compression yields the CPU to capture: it can always finish later, a full pipe cannot wait.
fn lower_priority() {
    // SAFETY: gettid and setpriority on this thread only (Linux nice values are per thread).
    unsafe {
        let tid = nix::libc::gettid();
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid as nix::libc::id_t, 10);
    }
}

fn run(job: &Job) {
    if job.compress && job.path.extension().is_some_and(|e| e == "log") {
        if let Err(e) = gzip(&job.path) {
            tracing::warn!(service = %job.service, "cannot compress {}: {e}", job.path.display());
        }
    }
    if let Some(dir) = job.path.parent() {
        rotated::apply_retention(dir, &job.service, job.retain, job.max_files, SystemTime::now());
    }
}

/// Compresses `path` (`x.log`) to `x.log.gz` crash-safely and removes `path`.
pub fn gzip(path: &Path) -> io::Result<PathBuf> {
    let gz = path.with_extension("log.gz");
    let tmp = path.with_extension("log.gz.tmp");
    // never through a link: a rotated file or a `.gz.tmp` planted as one would make the
    // daemon copy a file it can read into the log history, or overwrite one it can write
    let mut input = BufReader::with_capacity(256 * 1024, files::open_read(path)?);
    // 0640 like every log file: rotated output is no more public than current.log
    let tmp_file = files::create_new(&tmp, 0o640)?;
    let output = BufWriter::with_capacity(256 * 1024, tmp_file);
    let mut encoder = GzEncoder::new(output, Compression::new(3));
    io::copy(&mut input, &mut encoder)?;
    let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    std::fs::remove_file(path)?;
    Ok(gz)
}

/// Finishes what a crash interrupted in `dir` for `service`: removes partial `.gz.tmp` files
/// and plain files whose `.gz` is complete; returns the plain rotated files still to compress.
pub fn recover(dir: &Path, service: &str) -> Vec<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&format!("{service}-")) && name.ends_with(".log.gz.tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    rotated::list(dir, service)
        .into_iter()
        .filter(|r| !r.compressed)
        .filter_map(|r| {
            if r.path.with_extension("log.gz").exists() {
                let _ = std::fs::remove_file(&r.path);
                None
            } else {
                Some(r.path)
            }
        })
        .collect()
}

/// Reads a whole log file, plain or gzipped.
pub fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(BufReader::new(files::open_read(path)?)).read_to_end(&mut out)?;
    } else {
        files::open_read(path)?.read_to_end(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_replaces_the_plain_file_with_a_complete_gz() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("api-20260101T000000.000Z.log");
        let text: Vec<u8> = (0..10_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        std::fs::write(&plain, &text).unwrap();
        let gz = gzip(&plain).unwrap();
        assert!(!plain.exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&gz).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(read_all(&gz).unwrap(), text);
    }

    #[test]
    fn recovery_drops_partial_output_and_plain_files_already_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let done = d.join("api-20260101T000000.000Z.log");
        std::fs::write(&done, "a\n").unwrap();
        gzip(&done).unwrap();
        std::fs::write(&done, "a\n").unwrap(); // crash after the rename, before the unlink
        let todo = d.join("api-20260101T000001.000Z.log");
        std::fs::write(&todo, "b\n").unwrap();
        std::fs::write(todo.with_extension("log.gz.tmp"), "truncated").unwrap(); // crash mid-write
        assert_eq!(recover(d, "api"), vec![todo.clone()]);
        assert!(!done.exists() && done.with_extension("log.gz").exists());
        assert!(!todo.with_extension("log.gz.tmp").exists());
    }
}
