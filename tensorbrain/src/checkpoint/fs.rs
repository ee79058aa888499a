//! The file-system operations a checkpoint save is made of, behind a trait so that a test (or
//! unusual storage) can stand in for the local disk: fail a write, fill the disk after so many
//! bytes, or kill the process between two files.

use std::io::{self, Write};
use std::path::Path;

/// What [`CheckpointDir`](super::CheckpointDir) does to the disk while saving. Every method
/// defaults to the local file system ([`LocalFs`]), so an implementation overrides only the
/// operations it wants to change. Reading and listing go straight to the file system: a save
/// must survive faults, a load only reports them.
pub trait CheckpointFs: Send + Sync {
    /// Creates (or truncates) `path`, writes `bytes` and flushes them to stable storage
    /// (fsync), so the file is whole on disk when this returns.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Creates the directory `path`; its parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    /// Creates `path` and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    /// Renames `from` to `to` in one atomic step (both in the same directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Flushes the entries of directory `path` (files created or renamed in it) to stable
    /// storage, so that a rename survives a power cut.
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        sync_dir(path)
    }

    /// Removes the directory `path` and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
}

/// The local file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalFs;

impl CheckpointFs for LocalFs {}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Directories cannot be opened as files here; their entries are flushed with the files.
#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}
