//! Datasets and their file formats.

pub mod digits;

use std::path::Path;

use crate::tensor::{Error, Result};

/// Opens a data file, turning "not found" into an error that says where the data can be had.
pub(crate) fn open_data_file(path: &Path, what: &str, where_to_get: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::Io {
        context: format!("cannot open {what} at {} ({where_to_get})", path.display()),
        source: e,
    })
}
