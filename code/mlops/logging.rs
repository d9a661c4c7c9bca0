//! What `dlbook train` and the experiments record in the tracker: lineage tags (the
//! git commit, the data's sha256, the configuration), parameters, metrics per step,
//! and artifacts (the model file, the generated tables and figures).
//!
//! The store is `mlruns/` in the book's folder (ignored by git) unless
//! `MLFLOW_TRACKING_URI` names another ([`store_for`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::tracking::{check_key, Run, RunStatus, Tracker, MAX_PARAM_LEN};
use crate::report::{Report, Value as ReportValue};
use crate::train::{Callback, Control, EpochInfo, StepInfo, Summary};

/// Tag: the commit of the code that made the run.
pub const TAG_COMMIT: &str = "git_commit";
/// Tag: one sha256 over every data file the run read (each named with its own sha256).
pub const TAG_DATA: &str = "data_sha256";
/// Tag: the run's whole configuration, as JSON.
pub const TAG_CONFIG: &str = "config";
/// The longest tag value MLflow keeps; a longer configuration goes in an artifact only.
const MAX_TAG_LEN: usize = 8000;

/// The tracker runs go to: `MLFLOW_TRACKING_URI` if set, else `mlruns/` under
/// `book_root`.
pub fn store_for(book_root: &Path) -> Result<Tracker> {
    Tracker::from_env(&book_root.join("mlruns"))
}

/// The commit checked out in `dir` (with `-dirty` when files differ from it), or
/// `unknown` outside a git checkout.
pub fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        _ => "unknown".into(),
    }
}

/// One sha256 naming a set of data files by their own: the digest of the sorted
/// `file sha256` lines (so the order they were read in does not matter).
pub fn data_digest(files: &[(String, String)]) -> String {
    let mut lines: Vec<String> =
        files.iter().map(|(f, s)| format!("{f} {s}\n")).collect();
    lines.sort();
    let d = Sha256::digest(lines.concat());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The leaves of a JSON configuration as MLflow parameters: nested keys joined by `/`,
/// characters MLflow refuses in keys replaced by `_`, values as JSON text (strings
/// bare); values longer than MLflow keeps are left to the `config` tag and artifact.
pub fn flatten_params(config: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let k: String = k
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || "_-. ".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}/{k}")
                    };
                    walk(&key, x, out);
                }
            }
            _ => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let key = if prefix.is_empty() { "config" } else { prefix };
                if text.len() <= MAX_PARAM_LEN && check_key(key).is_ok() {
                    out.push((key.to_string(), text));
                }
            }
        }
    }
    let mut out = vec![];
    walk("", config, &mut out);
    out
}

/// Starts a run with the lineage every run carries: the commit, the data's digest and
/// the configuration (as parameters, as a tag when it fits, and as `config.json`).
pub fn start_run(
    tracker: &Tracker,
    experiment: &str,
    run_name: &str,
    commit: &str,
    data: &[(String, String)],
    config: &Value,
) -> Result<Run> {
    let exp = tracker.experiment(experiment)?;
    let config_text = serde_json::to_string(config)?;
    let digest = data_digest(data);
    let mut tags = vec![(TAG_COMMIT, commit), (TAG_DATA, digest.as_str())];
    if config_text.len() <= MAX_TAG_LEN {
        tags.push((TAG_CONFIG, &config_text));
    }
    let mut run = tracker.start_run(&exp, run_name, &tags)?;
    for (k, v) in flatten_params(config) {
        run.log_param(&k, &v)?;
    }
    for (file, sha) in data {
        let key = format!("data/{file}");
        if check_key(&key).is_ok() {
            run.set_tag(&key, sha)?;
        }
    }
    let tmp = std::env::temp_dir().join(format!(
        "dlbook-config-{}-{}.json",
        std::process::id(),
        run.id()
    ));
    std::fs::write(&tmp, serde_json::to_string_pretty(config)?)?;
    let logged = run.log_artifact(&tmp, "config.json");
    let _ = std::fs::remove_file(&tmp);
    logged?;
    Ok(run)
}

/// Records an experiment's report as a finished run of the MLflow experiment named
/// after it: its configuration and data lineage, each fact as a metric (a per-seed
/// fact as one value per seed, the seed's index as the step), and `files` (what the
/// report wrote: JSON, tables, figures) as artifacts. Returns the run's id.
pub fn log_report(
    tracker: &Tracker,
    report: &Report,
    preset: &str,
    commit: &str,
    files: &[PathBuf],
) -> Result<String> {
    let data: Vec<(String, String)> = report
        .data
        .iter()
        .map(|d| (d.file.clone(), d.sha256.clone()))
        .collect();
    let mut run = start_run(
        tracker,
        &report.experiment,
        preset,
        commit,
        &data,
        &report.config,
    )?;
    run.set_tag("chapter", &report.chapter)?;
    run.set_tag("preset", preset)?;
    let seeds: Vec<String> = report.seeds.iter().map(u64::to_string).collect();
    if !seeds.is_empty() {
        // A tag: the configuration may hold its own `seeds` parameter.
        run.set_tag("seeds", &seeds.join(","))?;
    }
    for (name, fact) in &report.facts {
        if check_key(name).is_err() {
            continue;
        }
        match &fact.value {
            ReportValue::Num(v) => run.log_metric(name, *v, 0)?,
            ReportValue::Seeds(vs) => {
                for (i, v) in vs.iter().enumerate() {
                    run.log_metric(name, *v, i as i64)?;
                }
            }
            ReportValue::Text(_) => {}
        }
    }
    for f in files {
        if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
            run.log_artifact(f, name)?;
        }
    }
    let id = run.id().to_string();
    run.end(RunStatus::Finished)?;
    Ok(id)
}

/// A training callback that also logs to a run: the mean training loss every
/// `log_every` steps (`train/loss`), and per epoch the training loss
/// (`epoch/train_loss`) and the validation accuracy and loss (`val/accuracy`,
/// `val/loss`), with the step count as MLflow's step. It wraps the callback whose
/// state a checkpoint keeps, so checkpoints do not change with tracking.
///
/// A failed write stops the logging, not the training; [`Logged::finish`] returns it.
pub struct Logged<'a> {
    inner: &'a mut dyn Callback,
    run: Option<&'a mut Run>,
    log_every: usize,
    window: (f64, usize),
    error: Option<anyhow::Error>,
}

impl<'a> Logged<'a> {
    /// `inner` as before, and its metrics logged to `run` (none: nothing logged).
    pub fn new(
        inner: &'a mut dyn Callback,
        run: Option<&'a mut Run>,
        log_every: usize,
    ) -> Self {
        assert!(log_every > 0, "log_every must be at least 1");
        Logged {
            inner,
            run,
            log_every,
            window: (0.0, 0),
            error: None,
        }
    }

    fn log(&mut self, metrics: &[(&str, f64)], step: usize) {
        if self.error.is_some() {
            return;
        }
        if let Some(run) = self.run.as_deref_mut() {
            if let Err(e) = run.log_metrics(metrics, step as i64) {
                self.error = Some(e);
            }
        }
    }

    /// The first logging error, if one happened.
    pub fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

impl Callback for Logged<'_> {
    fn on_step(&mut self, info: &StepInfo) -> Control {
        self.window.0 += f64::from(info.loss);
        self.window.1 += 1;
        if self.window.1 == self.log_every {
            let mean = self.window.0 / self.window.1 as f64;
            self.window = (0.0, 0);
            self.log(&[("train/loss", mean)], info.step);
        }
        self.inner.on_step(info)
    }

    fn on_epoch(&mut self, info: &EpochInfo) -> Control {
        let mut m = vec![("epoch/train_loss", info.train_loss)];
        if let Some(val) = &info.val {
            if let Some(acc) = val.accuracy {
                m.push(("val/accuracy", acc));
            }
            m.push(("val/loss", val.loss));
        }
        self.log(&m, info.step);
        self.inner.on_epoch(info)
    }

    fn on_end(&mut self, summary: &Summary) {
        self.inner.on_end(summary)
    }

    fn state(&self) -> Value {
        self.inner.state()
    }

    fn load_state(&mut self, state: &Value) -> std::result::Result<(), String> {
        self.inner.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configs_flatten_to_parameter_keys() {
        let p = flatten_params(
            &json!({"lr": 0.01, "model": {"layers": [3, 4], "act": "relu"}, "a:b": true}),
        );
        assert_eq!(
            p,
            vec![
                ("a_b".to_string(), "true".to_string()),
                ("lr".into(), "0.01".into()),
                ("model/act".into(), "relu".into()),
                ("model/layers".into(), "[3,4]".into()),
            ]
        );
    }

    #[test]
    fn the_data_digest_ignores_reading_order() {
        let a = vec![("x".to_string(), "1".to_string()), ("y".into(), "2".into())];
        let b = vec![a[1].clone(), a[0].clone()];
        assert_eq!(data_digest(&a), data_digest(&b));
        assert_ne!(data_digest(&a), data_digest(&a[..1]));
    }
}
