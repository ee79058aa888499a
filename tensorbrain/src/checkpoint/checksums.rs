//! SHA-256 checksums of a checkpoint's files, kept beside them in `SHA256SUMS` in the format
//! of `sha256sum` (so `sha256sum -c SHA256SUMS` checks a checkpoint by hand too). A flipped bit
//! in the weights is then a load error that says so, not a run that later "diverges".

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::tensor::{Error, Result};

/// The checksum file of a checkpoint directory.
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of a `SHA256SUMS` for `files`: `<hex>  <name>` per line.
pub(crate) fn render(files: &[(&str, &[u8])]) -> String {
    files.iter().map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes))).collect()
}

/// The checksums listed in `dir`'s `SHA256SUMS`, by file name; `None` if it has none (a
/// checkpoint written before checksums, which loads unverified).
pub(crate) fn read(dir: &Path) -> Result<Option<HashMap<String, String>>> {
    let path = dir.join(CHECKSUMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { context: format!("cannot read {}", path.display()), source: e }),
    };
    let mut sums = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        // `sha256sum` separates with two spaces (text mode) or " *" (binary mode).
        let parsed = line.split_once("  ").or_else(|| line.split_once(" *"));
        match parsed {
            Some((hex, name)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                sums.insert(name.to_string(), hex.to_ascii_lowercase());
            }
            _ => {
                return Err(Error::Msg(format!(
                    "{} line {}: expected '<64 hex digits>  <file name>', found {line:?}; the checksum list is corrupt",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(Some(sums))
}

/// Checks `bytes`, read from `dir/name`, against `sums` (from [`read`]).
pub(crate) fn verify(sums: &HashMap<String, String>, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let Some(want) = sums.get(name) else {
        return Err(Error::Msg(format!(
            "{}: {CHECKSUMS_FILE} has no SHA-256 for this file; the checkpoint is corrupt or was changed by hand",
            path.display()
        )));
    };
    let got = sha256_hex(bytes);
    if &got != want {
        return Err(Error::Msg(format!(
            "{}: SHA-256 mismatch: {CHECKSUMS_FILE} records {want}, the file has {got}; the file is corrupt \
             (it changed after it was saved)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn rendered_sums_read_back_and_verify() {
        let dir = std::env::temp_dir().join(format!("tensorbrain-sums-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CHECKSUMS_FILE), render(&[("a.bin", b"abc"), ("b.bin", b"")])).unwrap();
        let sums = read(&dir).unwrap().unwrap();
        verify(&sums, &dir, "a.bin", b"abc").unwrap();
        verify(&sums, &dir, "b.bin", b"").unwrap();
        let e = verify(&sums, &dir, "a.bin", b"abd").unwrap_err().to_string();
        assert!(e.contains("SHA-256 mismatch") && e.contains("a.bin"), "{e}");
        assert!(verify(&sums, &dir, "c.bin", b"").unwrap_err().to_string().contains("no SHA-256"));
        std::fs::write(dir.join(CHECKSUMS_FILE), "not a checksum\n").unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir).unwrap().is_none());
    }
}
