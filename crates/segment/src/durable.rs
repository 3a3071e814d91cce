//! The one place that makes file-system changes durable: a file written under a temporary
//! name, fsynced and renamed into place; a directory created or an entry renamed, with the
//! directories holding them fsynced, so that the change survives a crash or a power cut.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Fsyncs a directory, so that the entries just created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Why [`write_atomic`] failed, and whether the new file had already replaced the old one
/// (only fsyncing its directory failed): then readers see the new file, and the caller must
/// treat the write as done, not roll it back.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct AtomicWriteError {
    /// True when the rename was made (the new contents are in place, perhaps not yet durable).
    pub replaced: bool,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `bytes`, atomically and durably: written to `<path>.tmp` with `mode`
/// permissions, fsynced, renamed over `path`, and the directory fsynced. A crash leaves either
/// the old file or the new one, never a mix. The temporary file is removed when a step before
/// the rename fails.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let written = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(AtomicWriteError { replaced: false, source });
    }
    sync_dir(parent(path)).map_err(|source| AtomicWriteError { replaced: true, source })
}

/// Creates `dir` and its missing parents, and fsyncs the directory holding each one made, so
/// that the new entries survive a crash. Nothing happens when it exists already.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.is_dir()).collect();
    std::fs::create_dir_all(dir)?;
    for made in missing.iter().rev() {
        sync_dir(parent(made))?;
    }
    Ok(())
}

/// Renames `from` to `to` and fsyncs both directories (once when they are the same).
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let (a, b) = (parent(from), parent(to));
    sync_dir(b)?;
    if a != b {
        sync_dir(a)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("a.json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A write into a missing directory fails and leaves nothing behind.
        assert!(write_atomic(&dir.path().join("no/such.json"), b"x", 0o600).is_err());
        create_dir(&dir.path().join("x/y")).unwrap();
        rename(&path, &dir.path().join("x/y/b.json")).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(dir.path().join("x/y/b.json")).unwrap(), b"two");
    }
}
