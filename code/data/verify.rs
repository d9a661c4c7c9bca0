//! Checking the data folder against the catalog: every file's size and sha256, and for a
//! gzip file recompressed by another tool, the sha256 of its decompressed payload.

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{DataDir, DataFile, DatasetInfo, CATALOG};

/// What [`verify()`] found for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The sha256 matches.
    Ok,
    /// Another gzip stream of the same payload (its decompressed sha256 matches).
    OkRecompressed,
    /// No such file.
    Missing,
    /// The file exists but is not what the catalog records.
    Corrupt(String),
}

impl Status {
    /// Whether the file can be used.
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok | Status::OkRecompressed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => write!(f, "OK"),
            Status::OkRecompressed => {
                write!(f, "OK (recompressed; payload sha256 matches)")
            }
            Status::Missing => write!(f, "MISSING"),
            Status::Corrupt(why) => write!(f, "CORRUPT: {why}"),
        }
    }
}

/// The verdict on one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// Dataset name.
    pub dataset: &'static str,
    /// Path relative to the data folder.
    pub path: &'static str,
    /// What was found.
    pub status: Status,
}

impl FileReport {
    /// Whether the file can be used.
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Corrupt(why) => write!(f, "CORRUPT  {}: {why}", self.path),
            other => write!(f, "{:<8} {}", other.to_string(), self.path),
        }
    }
}

/// sha256 of everything `r` yields, as lowercase hex.
pub fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What the file at `path` is, against its catalog entry.
pub(super) fn check_file(path: &Path, file: &DataFile) -> Status {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Status::Missing,
    };
    let sha = match std::fs::File::open(path).and_then(sha256_hex) {
        Ok(s) => s,
        Err(e) => return Status::Corrupt(format!("cannot read: {e}")),
    };
    if sha == file.sha256 && meta.len() == file.bytes {
        return Status::Ok;
    }
    if let Some(raw) = file.raw_sha256 {
        let payload = std::fs::File::open(path).and_then(|f| {
            sha256_hex(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        });
        return match payload {
            Ok(s) if s == raw => Status::OkRecompressed,
            Ok(_) => Status::Corrupt(format!(
                "sha256 {sha} differs from {}, and so does the decompressed payload's",
                file.sha256
            )),
            Err(e) => Status::Corrupt(format!(
                "sha256 {sha} differs from {}, and it does not decompress: {e}",
                file.sha256
            )),
        };
    }
    Status::Corrupt(format!(
        "{} bytes with sha256 {sha}; expected {} bytes with sha256 {}",
        meta.len(),
        file.bytes,
        file.sha256
    ))
}

/// The named datasets, or every required one if `names` is empty.
pub(super) fn selected(names: &[&str]) -> Result<Vec<&'static DatasetInfo>> {
    if names.is_empty() {
        return Ok(CATALOG.iter().filter(|d| !d.optional).collect());
    }
    names
        .iter()
        .map(|n| {
            CATALOG.iter().find(|d| d.name == *n).with_context(|| {
                let known: Vec<&str> = CATALOG.iter().map(|d| d.name).collect();
                format!("no dataset `{n}`; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// Checks every file of the named datasets (every required one if `names` is empty).
pub fn verify(dir: &DataDir, names: &[&str]) -> Result<Vec<FileReport>> {
    let mut out = vec![];
    for d in selected(names)? {
        for f in d.files {
            out.push(FileReport {
                dataset: d.name,
                path: f.path,
                status: check_file(&dir.path(f.path), f),
            });
        }
    }
    Ok(out)
}
