//! Running a reference library beside ours: the benchmarks that compare with PyTorch,
//! scikit-learn, XGBoost or hmmlearn embed a small Python script (`include_str!`), run it
//! with `python3 -c`, hand it its input as arguments or as JSON on stdin, and read what it
//! prints. One function does that for all of them, so a failure reads the same everywhere:
//! the last line of the script's stderr (usually the exception), or that `python3` is
//! missing. The book's tests never call it: the references are optional.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// Runs `python3 -c script args...` with the extra environment `env`, writes `input` to
/// its stdin (if any) and returns its stdout. A script that fails is an error carrying
/// the last line of its stderr.
pub fn run(
    script: &str,
    args: &[String],
    env: &[(&str, String)],
    input: Option<&[u8]>,
) -> Result<String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3")?;
    if let Some(bytes) = input {
        // Written before waiting: the scripts read all of stdin before printing, and
        // dropping the handle closes it, so the script sees the end of its input.
        let mut stdin = child.stdin.take().context("python3's stdin")?;
        stdin
            .write_all(bytes)
            .context("writing to python3's stdin")?;
    }
    let out = child.wait_with_output().context("waiting for python3")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.lines().last().unwrap_or("python3 failed"));
    }
    String::from_utf8(out.stdout).context("python3 printed something that is not UTF-8")
}

/// The version a one-line import check prints (`import torch; print(torch.__version__)`),
/// or an error naming `what` cannot be imported.
pub fn version(check: &str, what: &str) -> Result<String> {
    run(check, &[], &[], None)
        .map(|v| v.trim().to_string())
        .map_err(|_| anyhow!("python3 cannot import {what}"))
}

/// The number after the word `key` in whitespace-separated `text` (`cpu_s 1.25 wall_s
/// 0.7`): how the scripts that print `key value` pairs report.
pub fn value(text: &str, key: &str) -> Result<f64> {
    let mut words = text.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == key)
        .ok_or_else(|| anyhow!("no `{key}` in: {text}"))?;
    let v = words.next().unwrap_or("");
    v.parse()
        .with_context(|| format!("`{key}` is followed by `{v}`, not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_reads_the_number_after_its_key() {
        let text = "cpu_s 1.25 wall_s 0.5\n";
        assert_eq!(value(text, "wall_s").unwrap(), 0.5);
        assert_eq!(value(text, "cpu_s").unwrap(), 1.25);
        assert!(value(text, "acc")
            .unwrap_err()
            .to_string()
            .contains("no `acc`"));
        assert!(value("cpu_s x", "cpu_s")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
    }
}
