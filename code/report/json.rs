//! The deterministic JSON: floats rounded to [`SIGNIFICANT_DIGITS`], files written
//! atomically.

use std::path::Path;

use anyhow::{Context, Result};

/// Floats are rounded to this many significant digits before they are stored, which
/// keeps the JSON readable and its diffs free of last-bit noise.
pub const SIGNIFICANT_DIGITS: i32 = 6;

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so a reader
/// never sees half a file and a failed write leaves the old file (and no temporary) in
/// place. Results, model files and training checkpoints are all written so.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// [`write_file_atomic`], with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Rounds `x` to [`SIGNIFICANT_DIGITS`] significant digits.
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log10().floor() as i32;
    let p = SIGNIFICANT_DIGITS - 1 - e;
    // Going through the decimal string avoids the drift of multiplying by 10^p.
    format!("{:.*e}", (SIGNIFICANT_DIGITS - 1) as usize, x)
        .parse::<f64>()
        .map(|r| if p > 300 { x } else { r })
        .unwrap_or(x)
}

pub(super) fn round_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                let r = round_sig(x);
                // Integral floats print as `3.0`; keep them floats so the type is stable.
                if let Some(num) = serde_json::Number::from_f64(r) {
                    *n = num;
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(round_floats),
        serde_json::Value::Object(o) => o.values_mut().for_each(round_floats),
        _ => {}
    }
}
