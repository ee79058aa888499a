//! A directory of checkpoints, each saved all-or-nothing.
//!
//! ```text
//! runs/mlp-mnist/
//!   ckpt-000004-epoch4/      model.safetensors, training_state.safetensors, SHA256SUMS
//!   ckpt-000005-epoch5/
//!   .ckpt-tmp-4242-000006/   a save in progress (or the remains of one that was killed)
//! ```
//!
//! A save writes every file of the new checkpoint into a temporary directory beside the old
//! ones, flushes each to disk, then gives the directory its final name in one atomic rename:
//! that rename is the commit. Until it happens the previous checkpoint is untouched, so a save
//! cut short by an I/O error, a full disk or `kill -9` loses nothing but the checkpoint being
//! written. Committed checkpoints are numbered in the order they were saved; the newest is the
//! one with the highest number, and only the last `keep_last` (default 2) are kept.
//! Temporaries left by processes that died are removed by the next save or load.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checksums::{self, CHECKSUMS_FILE};
use super::fs::{CheckpointFs, LocalFs};
use crate::tensor::{Error, Result};

/// Committed checkpoints are `ckpt-<number>[-<label>]`.
const PREFIX: &str = "ckpt-";
/// Temporaries are `.ckpt-tmp-<pid>-<...>`: a save in progress, or a checkpoint being removed.
const TEMP_PREFIX: &str = ".ckpt-tmp-";
/// How many checkpoints a [`CheckpointDir`] keeps unless told otherwise.
pub const DEFAULT_KEEP_LAST: usize = 2;

/// Where a run's checkpoints go, and how many are kept.
///
/// ```no_run
/// # use tensorbrain::checkpoint::CheckpointDir;
/// let store = CheckpointDir::new("runs/mlp").keep_last(3);
/// let saved = store.save("epoch1", &[("weights.bin", &b"..."[..])])?;
/// assert_eq!(store.latest()?, Some(saved));
/// # Ok::<(), tensorbrain::Error>(())
/// ```
#[derive(Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    keep_last: usize,
    fs: Arc<dyn CheckpointFs>,
}

impl std::fmt::Debug for CheckpointDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointDir").field("root", &self.root).field("keep_last", &self.keep_last).finish_non_exhaustive()
    }
}

/// A committed checkpoint's number and path.
struct Committed {
    number: u64,
    path: PathBuf,
}

impl CheckpointDir {
    /// Checkpoints in `root` (created on the first save), keeping the last
    /// [`DEFAULT_KEEP_LAST`], written to the local disk.
    pub fn new(root: impl Into<PathBuf>) -> CheckpointDir {
        CheckpointDir { root: root.into(), keep_last: DEFAULT_KEEP_LAST, fs: Arc::new(LocalFs) }
    }

    /// Keeps the newest `k` checkpoints and removes older ones after each save (at least 1:
    /// the newest is never removed; `usize::MAX` keeps all).
    pub fn keep_last(mut self, k: usize) -> CheckpointDir {
        self.keep_last = k.max(1);
        self
    }

    /// Saves through `fs` instead of the local file system (to inject faults in tests).
    pub fn with_fs(mut self, fs: impl CheckpointFs + 'static) -> CheckpointDir {
        self.fs = Arc::new(fs);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The committed checkpoints, oldest first (none if the directory does not exist).
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        Ok(self.committed()?.into_iter().map(|c| c.path).collect())
    }

    /// The newest committed checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.committed()?.pop().map(|c| c.path))
    }

    /// Writes `files` (name, contents) as one new checkpoint named `ckpt-<number>-<label>`
    /// and returns its directory. Either every file is committed, with their SHA-256s in
    /// `SHA256SUMS`, or the save fails and the checkpoints already there are as they were.
    pub fn save(&self, label: &str, files: &[(&str, &[u8])]) -> Result<PathBuf> {
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(Error::Msg(format!("checkpoint label {label:?}: use letters, digits, '-', '_' and '.' only")));
        }
        if let Some((name, _)) = files.iter().find(|(name, _)| name.contains(['/', '\\']) || name.starts_with('.') || *name == CHECKSUMS_FILE) {
            return Err(Error::Msg(format!("checkpoint file name {name:?}: a plain file name is needed (not {CHECKSUMS_FILE}, not hidden)")));
        }
        let fs = &*self.fs;
        if !self.root.is_dir() {
            fs.create_dir_all(&self.root).map_err(|e| io_error(format!("cannot create checkpoint directory {}", self.root.display()), e))?;
            // Persist the new directory's own entry too, or a power cut could lose it whole.
            let parent = self.root.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            fs.sync_dir(parent).map_err(|e| io_error(format!("cannot flush {}", parent.display()), e))?;
        }
        self.remove_stale_temporaries();
        let previous = self.committed()?.pop();
        let number = previous.as_ref().map_or(0, |c| c.number) + 1;
        let name = if label.is_empty() { format!("{PREFIX}{number:06}") } else { format!("{PREFIX}{number:06}-{label}") };
        let target = self.root.join(&name);
        let tmp = self.root.join(format!("{TEMP_PREFIX}{}-{number:06}", std::process::id()));
        if tmp.exists() {
            // Left by an earlier save of this process whose cleanup failed.
            fs.remove_dir_all(&tmp).map_err(|e| io_error(format!("cannot remove the stale temporary {}", tmp.display()), e))?;
        }

        let write = || -> std::result::Result<(), (String, io::Error)> {
            let step = |what: String| move |e| (what, e);
            fs.create_dir(&tmp).map_err(step(format!("cannot create {}", tmp.display())))?;
            for (file, bytes) in files {
                fs.write_file(&tmp.join(file), bytes).map_err(step(format!("cannot write {file}")))?;
            }
            fs.write_file(&tmp.join(CHECKSUMS_FILE), checksums::render(files).as_bytes()).map_err(step(format!("cannot write {CHECKSUMS_FILE}")))?;
            fs.sync_dir(&tmp).map_err(step(format!("cannot flush {}", tmp.display())))?;
            fs.rename(&tmp, &target).map_err(step(format!("cannot rename {} to {name}", tmp.display())))
        };
        if let Err((what, e)) = write() {
            let _ = fs.remove_dir_all(&tmp);
            let kept = match &previous {
                Some(c) => format!("the previous checkpoint, {}, is intact", file_name(&c.path)),
                None => "there is no earlier checkpoint".to_string(),
            };
            return Err(io_error(format!("saving checkpoint {} ({kept}): {what}", target.display()), e));
        }
        fs.sync_dir(&self.root).map_err(|e| io_error(format!("saved {} but cannot flush {}", target.display(), self.root.display()), e))?;
        self.remove_all_but_newest()?;
        Ok(target)
    }

    /// The committed checkpoints sorted by number.
    fn committed(&self) -> Result<Vec<Committed>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(format!("cannot list checkpoint directory {}", self.root.display()), e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(format!("cannot list checkpoint directory {}", self.root.display()), e))?;
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(checkpoint_number) else { continue };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(Committed { number, path: entry.path() });
            }
        }
        found.sort_by_key(|c| c.number);
        Ok(found)
    }

    /// Removes committed checkpoints beyond the newest `keep_last`. Each is first renamed to a
    /// temporary name (atomically), so a crash half-way through a removal leaves a temporary,
    /// not a checkpoint with files missing.
    fn remove_all_but_newest(&self) -> Result<()> {
        let committed = self.committed()?;
        let excess = committed.len().saturating_sub(self.keep_last);
        for old in &committed[..excess] {
            let doomed = self.root.join(format!("{TEMP_PREFIX}{}-removing-{}", std::process::id(), old.number));
            let fail = |e| io_error(format!("cannot remove old checkpoint {} (keeping the last {})", old.path.display(), self.keep_last), e);
            self.fs.rename(&old.path, &doomed).map_err(fail)?;
            self.fs.remove_dir_all(&doomed).map_err(fail)?;
        }
        Ok(())
    }

    /// Removes the temporaries of processes that no longer run: saves killed part-way, and
    /// the temporary files of the flat layout's single-file writes. Best effort: a temporary
    /// that cannot be removed is harmless (it is never mistaken for a checkpoint), so neither
    /// a save nor a load fails over one. Temporaries of live processes (a save in progress in
    /// another process or in this one) are left alone.
    pub fn remove_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(pid) = temporary_owner(name) else { continue };
            if pid == std::process::id() || process_is_alive(pid) {
                continue;
            }
            let path = entry.path();
            let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) { self.fs.remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

fn io_error(context: String, source: io::Error) -> Error {
    Error::Io { context, source }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The number of a committed checkpoint's directory name: `ckpt-000012-epoch3` is 12.
fn checkpoint_number(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = rest.split('-').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The process id in a temporary's name: `.ckpt-tmp-<pid>-...` (this module's) or
/// `.<file>.tmp-<pid>` (a single-file write of [`write_atomically`](super::write_atomically),
/// which the flat checkpoint layout used).
fn temporary_owner(name: &str) -> Option<u32> {
    let digits = match name.strip_prefix(TEMP_PREFIX) {
        Some(rest) => rest.split('-').next()?,
        None if name.starts_with('.') => name.rsplit_once(".tmp-")?.1,
        None => return None,
    };
    digits.parse().ok()
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
#[cfg(unix)]
fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
    // SAFETY: kill with signal 0 sends no signal; it only reports whether `pid` exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    // EPERM: it exists but belongs to someone else.
    found || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Without a cheap check, another process's temporaries are left alone.
#[cfg(not(unix))]
fn process_is_alive(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_checkpoints_and_temporaries() {
        assert_eq!(checkpoint_number("ckpt-000012-epoch3"), Some(12));
        assert_eq!(checkpoint_number("ckpt-7"), Some(7));
        assert_eq!(checkpoint_number("ckpt--epoch3"), None);
        assert_eq!(checkpoint_number("ckpt-12a"), None);
        assert_eq!(checkpoint_number(".ckpt-tmp-12-000001"), None);
        assert_eq!(temporary_owner(".ckpt-tmp-4242-000006"), Some(4242));
        assert_eq!(temporary_owner(".ckpt-tmp-4242-removing-3"), Some(4242));
        assert_eq!(temporary_owner(".training_state.safetensors.tmp-77"), Some(77));
        assert_eq!(temporary_owner("ckpt-000001-epoch1"), None);
        assert_eq!(temporary_owner(".hidden"), None);
    }

    #[cfg(unix)]
    #[test]
    fn this_process_is_alive() {
        assert!(process_is_alive(std::process::id()));
    }

    #[test]
    fn saves_are_numbered_listed_and_pruned() {
        let root = std::env::temp_dir().join(format!("tensorbrain-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = CheckpointDir::new(&root).keep_last(2);
        assert_eq!(store.latest().unwrap(), None);
        for k in 1..=3 {
            let path = store.save(&format!("e{k}"), &[("a.bin", &[k as u8; 3])]).unwrap();
            assert_eq!(path, root.join(format!("ckpt-{k:06}-e{k}")));
            assert_eq!(std::fs::read(path.join("a.bin")).unwrap(), [k as u8; 3]);
            let sums = std::fs::read_to_string(path.join(CHECKSUMS_FILE)).unwrap();
            assert!(sums.ends_with("  a.bin\n"), "{sums}");
        }
        let names: Vec<String> = store.list().unwrap().iter().map(|p| file_name(p)).collect();
        assert_eq!(names, ["ckpt-000002-e2", "ckpt-000003-e3"]);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 2, "no temporaries remain");
        assert!(store.save("bad/label", &[]).is_err());
        assert!(store.save("x", &[("../escape", b"")]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
