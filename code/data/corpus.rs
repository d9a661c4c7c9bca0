//! Text corpora (Tiny Shakespeare).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads a text corpus, which must be non-empty ASCII (the book's corpora are).
pub fn read_corpus(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.is_empty() {
        bail!("{}: empty corpus", path.display());
    }
    if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
        bail!(
            "{}: byte 0x{:02x} at offset {i} is not ASCII",
            path.display(),
            bytes[i]
        );
    }
    Ok(String::from_utf8(bytes).expect("ASCII is UTF-8"))
}
