//! Files that hold secrets.

use std::{fs, io, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

/// Writes `contents` to a new or truncated file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open; make sure it is private.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents)
}
