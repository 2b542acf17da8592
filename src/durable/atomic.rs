//! Files that appear whole or not at all.
//!
//! An [`AtomicFile`] is written to a temporary file beside its target (same
//! directory, so the same file system) and only [`commit`](AtomicFile::commit)
//! makes it the target: flush, fsync the file, rename it over the target,
//! fsync the directory. Until then the target is untouched: a fatal error, a
//! signal or a crash leaves an existing file as it was (a crash may leave a
//! `.payments-engine-*` temporary beside it), and two runs writing the same
//! target never mix their bytes (the last rename wins, whole).
//!
//! A target that exists and is not a regular file (`/dev/null`, a FIFO, a
//! terminal) cannot be replaced by a rename, and must not be: it is written in
//! place.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The prefix of every temporary file this program writes beside a
/// target; the writer's pid and a `-` follow, so that a later run can tell
/// a temporary left by a process that died from one still being written.
pub const TEMP_PREFIX: &str = ".payments-engine-";

/// The prefix of this process's temporaries: [`TEMP_PREFIX`], pid, `-`.
pub(crate) fn own_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// A file being written, invisible at its target until committed.
pub struct AtomicFile {
    target: PathBuf,
    kind: Kind,
}

enum Kind {
    /// Written beside the target, renamed over it on commit.
    Temp(BufWriter<tempfile::NamedTempFile>),
    /// A special file (device, FIFO), written in place.
    Direct(BufWriter<File>),
}

impl AtomicFile {
    /// Starts writing `target`, readable as a file the program created
    /// directly would be (mode 0666 less the umask), or with the mode of the
    /// file it replaces. Fails early when its directory cannot hold a new
    /// file (missing, read-only).
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        AtomicFile::with_mode(target, 0o666)
    }

    /// [`AtomicFile::create`] for a file only its owner may read (mode 0600
    /// when new): the ledger's state.
    pub fn create_private(target: &Path) -> io::Result<AtomicFile> {
        AtomicFile::with_mode(target, 0o600)
    }

    fn with_mode(target: &Path, new_mode: u32) -> io::Result<AtomicFile> {
        let existing = fs::metadata(target).ok();
        let kind = if existing.as_ref().is_some_and(|m| !m.is_file()) {
            Kind::Direct(BufWriter::with_capacity(256 * 1024, File::create(target)?))
        } else {
            let mut builder = tempfile::Builder::new();
            let prefix = own_prefix();
            builder.prefix(&prefix);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // The kernel applies the umask to a new file's mode.
                let mode = existing.map_or(new_mode, |m| m.permissions().mode());
                builder.permissions(fs::Permissions::from_mode(mode));
            }
            #[cfg(not(unix))]
            let _ = new_mode;
            let temp = builder.tempfile_in(directory_of(target))?;
            Kind::Temp(BufWriter::with_capacity(256 * 1024, temp))
        };
        Ok(AtomicFile {
            target: target.to_path_buf(),
            kind,
        })
    }

    /// Removes the temporaries that processes which have died left in the
    /// directory of `path` (a `kill -9` during a save, an out-of-memory exit):
    /// those whose name carries the pid of no running process. Best effort:
    /// what cannot be listed or removed is left. Only where `/proc` tells which
    /// processes run.
    pub fn remove_stale_temporaries(path: &Path) {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = fs::read_dir(directory_of(path)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let running =
                pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
            if !running {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Where the file will appear.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes and fsyncs what was written, without making it visible: the
    /// errors a full disk gives come out here, before anything is committed.
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Direct(out) => out.flush(),
            Kind::Temp(out) => {
                out.flush()?;
                out.get_ref().as_file().sync_all()
            }
        }
    }

    /// Makes the written bytes the target's content, durably: a crash after
    /// this returns leaves the new file; a crash before it, the old one.
    pub fn commit(mut self) -> io::Result<()> {
        self.sync()?;
        match self.kind {
            Kind::Direct(_) => Ok(()),
            Kind::Temp(out) => {
                let temp = out.into_inner().map_err(|e| e.into_error())?;
                temp.persist(&self.target).map_err(|e| e.error)?;
                sync_directory(&self.target)
            }
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Temp(out) => out.write(buf),
            Kind::Direct(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Temp(out) => out.write_all(buf),
            Kind::Direct(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Temp(out) => out.flush(),
            Kind::Direct(out) => out.flush(),
        }
    }
}

/// Seeking lets a writer go back and fill in a length or a checksum (the
/// state file's section headers); a special file cannot seek.
impl Seek for AtomicFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match &mut self.kind {
            Kind::Temp(out) => out.seek(to),
            Kind::Direct(out) => out.seek(to),
        }
    }
}

/// The directory a relative or absolute `path` lives in.
pub fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path`, so that a rename into it survives a
/// power cut.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(directory_of(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!("{TEMP_PREFIX}{dead}-a1b2c3"),
            format!("{TEMP_PREFIX}{dead}-prev"),
            format!("{}x9y8z7", own_prefix()),
            format!("{TEMP_PREFIX}old-style"),
            "state.bin".to_string(),
        ];
        for name in &names {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        AtomicFile::remove_stale_temporaries(&dir.path().join("state.bin"));
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut kept = vec![names[2].clone(), names[3].clone(), names[4].clone()];
        kept.sort();
        assert_eq!(left, kept);
    }

    #[test]
    fn the_target_changes_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        fs::write(&target, "old\n").unwrap();
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"new\n").unwrap();
        file.flush().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "old\n");
        file.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        // Dropped without a commit: nothing changes, nothing is left behind.
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"lost\n").unwrap();
        drop(file);
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    #[cfg(unix)]
    fn a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_usual_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let target = dir.path().join("out.csv");
        fs::write(&target, "old\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        AtomicFile::create(&target).unwrap().commit().unwrap();
        assert_eq!(mode(&target), 0o640);
        let private = dir.path().join("state.bin");
        AtomicFile::create_private(&private)
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(mode(&private), 0o600);
        let fresh = dir.path().join("new.csv");
        AtomicFile::create(&fresh).unwrap().commit().unwrap();
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let umask = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))
            .and_then(|text| u32::from_str_radix(text.trim(), 8).ok());
        if let Some(umask) = umask {
            assert_eq!(mode(&fresh), 0o666 & !umask, "as File::create makes it");
        }
    }

    #[test]
    #[cfg(unix)]
    fn a_special_file_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let mut file = AtomicFile::create(Path::new("/dev/null")).unwrap();
        file.write_all(b"gone").unwrap();
        file.commit().unwrap();
        let kind = fs::metadata("/dev/null").unwrap().file_type();
        assert!(kind.is_char_device(), "still the device");
    }

    #[test]
    fn a_missing_directory_fails_at_create() {
        assert!(AtomicFile::create(Path::new("/no/such/dir/out.csv")).is_err());
    }
}
