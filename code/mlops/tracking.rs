//! Experiment tracking in MLflow's file-store layout: every run's parameters, metrics
//! per step, tags and artifacts, written where `mlflow ui` and `mlflow.search_runs` read
//! them, with no server.
//!
//! ```text
//! mlruns/
//!   0/meta.yaml                     the Default experiment MLflow expects
//!   <experiment id>/meta.yaml       name, artifact location, lifecycle stage
//!   <experiment id>/<run id>/
//!     meta.yaml                     run name, status, start and end times
//!     params/<key>                  the value, as text
//!     metrics/<key>                 one line per value: "<ms since 1970> <value> <step>"
//!     tags/<key>                    the value, as text
//!     artifacts/                    files logged with the run
//! ```
//!
//! **Crash safety.** A run killed at any moment leaves a store MLflow still reads:
//! - every whole file (meta.yaml, a parameter, a tag, an artifact) is written to a
//!   temporary name in the same folder and renamed over the final one, so a reader sees
//!   the old file or the new one, never half of one;
//! - a metric value is one line appended by a single `write` call, which a killed
//!   process either made or did not;
//! - a run's `meta.yaml` is written after its folders, so a run killed while being
//!   created has no `meta.yaml`, and MLflow skips it as malformed instead of failing;
//!   a run killed while running stays `RUNNING`, as in MLflow itself.
//!
//! Keys become file names, so they are checked as MLflow checks them (letters, digits,
//! `_ - . / space`, at most 250 characters) and may not climb out of their folder.
//!
//! **A server instead.** [`Tracker::from_env`] reads `MLFLOW_TRACKING_URI` as MLflow's
//! own client does: an `http(s)://` URI sends the same calls to a tracking server over
//! its REST API ([`super::rest`]); a path or `file://` URI is a file store; unset, the
//! store is the folder the caller names.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::rest::{self, RestClient};

/// The longest key MLflow accepts.
pub const MAX_KEY_LEN: usize = 250;
/// The longest parameter value MLflow accepts.
pub const MAX_PARAM_LEN: usize = 6000;
/// The id and name of the experiment MLflow creates in every store.
const DEFAULT_EXPERIMENT: (&str, &str) = ("0", "Default");
/// MLflow's reserved folder of deleted experiments.
const TRASH: &str = ".trash";

/// A run's status, with MLflow's numbers (`RunStatus` in its protobuf schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Started and not finished (also what a killed run stays).
    Running = 1,
    /// Finished normally.
    Finished = 3,
    /// Ended by an error.
    Failed = 4,
    /// Stopped from outside.
    Killed = 5,
}

impl RunStatus {
    /// MLflow's name of the status in its REST API.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    fn from_name(name: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Failed,
            RunStatus::Killed,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    fn from_code(code: i64) -> Option<RunStatus> {
        Some(match code {
            1 => RunStatus::Running,
            3 => RunStatus::Finished,
            4 => RunStatus::Failed,
            5 => RunStatus::Killed,
            _ => return None,
        })
    }
}

/// Milliseconds since 1970, MLflow's timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a parameter, metric or tag key as MLflow does, and that it names a file
/// inside its folder.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        bail!(
            "key {key:?}: {} characters, must be 1 to {MAX_KEY_LEN}",
            key.len()
        );
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-./ ".contains(*c)))
    {
        bail!("key {key:?}: character {c:?} is not allowed (letters, digits, _ - . / space)");
    }
    if key.starts_with('/')
        || key
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
    {
        bail!("key {key:?}: must be a relative path without empty, `.` or `..` parts");
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename,
/// so readers see the old content or the new, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path has a folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().context("a file path has a name")?;
    // Unique per process and per call: threads of one process may write side by side.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    {
        let mut f =
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// A YAML scalar as MLflow writes strings: single-quoted when it would otherwise read
/// as something else.
pub(crate) fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./ ".contains(c))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && s.parse::<f64>().is_err()
        && !["true", "false", "null", "yes", "no", "on", "off", "~"]
            .contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The `key: value` lines of a flat YAML file as MLflow writes them (scalars only),
/// quotes removed.
pub(crate) fn read_yaml(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .with_context(|| format!("{}:{}: not `key: value`", path.display(), i + 1))?;
        let v = v.trim();
        let v = if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            v[1..v.len() - 1].replace("''", "'")
        } else {
            v.to_string()
        };
        map.insert(k.trim().to_string(), v);
    }
    Ok(map)
}

/// Writes experiment `id`'s `meta.yaml` in the file store at `root`.
fn write_experiment(root: &Path, id: &str, name: &str) -> Result<()> {
    let t = now_ms();
    let meta = format!(
        "artifact_location: file://{}\ncreation_time: {t}\nexperiment_id: '{id}'\n\
         last_update_time: {t}\nlifecycle_stage: active\nname: {}\n",
        root.join(id).display(),
        yaml_str(name)
    );
    write_atomic(&root.join(id).join("meta.yaml"), meta.as_bytes())
}

/// Where runs go: an `mlruns` folder, or an MLflow tracking server.
#[derive(Clone, Debug)]
pub struct Tracker {
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    File(PathBuf),
    Rest(RestClient),
}

/// The environment variable MLflow's clients read for the tracking store.
pub const TRACKING_URI_VAR: &str = "MLFLOW_TRACKING_URI";

impl Tracker {
    /// Opens the store at `root`, creating it (with MLflow's Default experiment) if it
    /// does not exist.
    pub fn open(root: &Path) -> Result<Tracker> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let (id, name) = DEFAULT_EXPERIMENT;
        if !root.join(id).join("meta.yaml").exists() {
            write_experiment(&root, id, name)?;
        }
        Ok(Tracker {
            store: Store::File(root),
        })
    }

    /// A tracker that logs to the MLflow tracking server at `uri` (`http://host:port`),
    /// each call failing after `timeout`. Nothing is sent until the first call.
    pub fn connect(uri: &str, timeout: std::time::Duration) -> Result<Tracker> {
        Ok(Tracker {
            store: Store::Rest(RestClient::new(uri, timeout)?),
        })
    }

    /// The store `MLFLOW_TRACKING_URI` names, as MLflow's client reads it (`http(s)://`
    /// a server, `file://` or a bare path a folder), or the folder `default_root` when
    /// it is unset or empty. Other schemes (`sqlite:`, `databricks`) are errors: this
    /// client speaks to them only through a server.
    pub fn from_env(default_root: &Path) -> Result<Tracker> {
        match std::env::var(TRACKING_URI_VAR) {
            Ok(uri) if !uri.trim().is_empty() => Tracker::from_uri(uri.trim()),
            _ => Tracker::open(default_root),
        }
    }

    /// The store a tracking URI names (see [`Tracker::from_env`]).
    pub fn from_uri(uri: &str) -> Result<Tracker> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            Tracker::connect(uri, rest::DEFAULT_TIMEOUT)
        } else if let Some(path) = uri.strip_prefix("file://") {
            Tracker::open(Path::new(path))
        } else if uri.contains("://") || uri.contains(':') && !uri.starts_with('/') {
            bail!(
                "{TRACKING_URI_VAR}={uri:?}: this client writes a file store (a path or \
                 file://) or talks to a server (http:// or https://); start `mlflow server \
                 --backend-store-uri {uri}` and point {TRACKING_URI_VAR} at it"
            )
        } else {
            Tracker::open(Path::new(uri))
        }
    }

    /// The store's folder, for a file store.
    pub fn root(&self) -> Option<&Path> {
        match &self.store {
            Store::File(root) => Some(root),
            Store::Rest(_) => None,
        }
    }

    /// The server's client, for a tracker that logs to one.
    pub(crate) fn rest_client(&self) -> Option<&RestClient> {
        match &self.store {
            Store::File(_) => None,
            Store::Rest(c) => Some(c),
        }
    }

    /// The run with id `run_id`, in whichever experiment it is, with its artifact URI
    /// and the names of its artifacts; an unknown id is an error saying so.
    pub fn find_run(&self, run_id: &str) -> Result<FoundRun> {
        if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("{run_id:?} is not a run id (MLflow's ids are 32 hex digits)");
        }
        let root = match &self.store {
            Store::File(root) => root,
            Store::Rest(c) => {
                let v = c.get_run(run_id)?;
                let info = v.get("info").context("a run without info")?;
                let artifact_uri = rest::str_of(info, "artifact_uri")?.to_string();
                return Ok(FoundRun {
                    record: RunRecord::from_json(c, &v)?,
                    artifacts: c.list_artifacts(run_id)?,
                    artifact_uri,
                });
            }
        };
        for (exp, _) in self.experiments()? {
            let dir = root.join(&exp).join(run_id);
            if dir.join("meta.yaml").exists() {
                let meta = read_yaml(&dir.join("meta.yaml"))?;
                let artifact_uri =
                    meta.get("artifact_uri").cloned().unwrap_or_else(|| {
                        format!("file://{}", dir.join("artifacts").display())
                    });
                return Ok(FoundRun {
                    record: RunRecord::read(&dir)?,
                    artifacts: file_names(&dir.join("artifacts"))?,
                    artifact_uri,
                });
            }
        }
        bail!("no run {run_id} in {}", root.display())
    }

    /// Where the runs go, for messages: the folder or the server's URI.
    pub fn location(&self) -> String {
        match &self.store {
            Store::File(root) => root.display().to_string(),
            Store::Rest(c) => c.uri().to_string(),
        }
    }

    /// Every experiment as `(id, name)`, in id order; folders without a readable
    /// `meta.yaml` are skipped, as MLflow skips them.
    pub fn experiments(&self) -> Result<Vec<(String, String)>> {
        let root = match &self.store {
            Store::File(root) => root,
            Store::Rest(c) => return c.experiments(),
        };
        let mut out = vec![];
        for entry in
            fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?
        {
            let entry = entry?;
            let id = entry.file_name().to_string_lossy().to_string();
            if id == TRASH || !entry.path().is_dir() {
                continue;
            }
            if let Ok(meta) = read_yaml(&entry.path().join("meta.yaml")) {
                if let Some(name) = meta.get("name") {
                    out.push((id, name.clone()));
                }
            }
        }
        out.sort_by(|a, b| {
            let key = |s: &str| (s.len(), s.to_string());
            key(&a.0).cmp(&key(&b.0))
        });
        Ok(out)
    }

    /// The id of the experiment called `name`, created if there is none. Ids are
    /// numbers, as MLflow's; two processes creating experiments at once get different
    /// ids (creating a folder is atomic).
    pub fn experiment(&self, name: &str) -> Result<String> {
        if name.trim().is_empty() {
            bail!("an experiment needs a name");
        }
        let root = match &self.store {
            Store::File(root) => root,
            Store::Rest(c) => return c.experiment(name),
        };
        let existing = self.experiments()?;
        if let Some((id, _)) = existing.iter().find(|(_, n)| n == name) {
            return Ok(id.clone());
        }
        let mut next = existing
            .iter()
            .filter_map(|(id, _)| id.parse::<u64>().ok())
            .max()
            .map_or(1, |m| m + 1);
        loop {
            let id = next.to_string();
            match fs::create_dir(root.join(&id)) {
                Ok(()) => {
                    write_experiment(root, &id, name)?;
                    return Ok(id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating experiment {name:?}"))
                }
            }
        }
    }

    /// Starts a run in experiment `experiment_id` called `run_name`, with `tags`.
    pub fn start_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(&str, &str)],
    ) -> Result<Run> {
        let start = now_ms();
        let root = match &self.store {
            Store::File(root) => root,
            Store::Rest(c) => {
                let mut all = vec![("mlflow.runName", run_name)];
                all.extend_from_slice(tags);
                let (run_id, artifact_uri) =
                    c.create_run(experiment_id, run_name, start, &all)?;
                return Ok(Run {
                    backend: RunBackend::Rest {
                        client: c.clone(),
                        artifact_uri,
                    },
                    run_id,
                    experiment_id: experiment_id.to_string(),
                    run_name: run_name.to_string(),
                    start_time: start,
                    ended: false,
                });
            }
        };
        let exp_dir = root.join(experiment_id);
        if !exp_dir.join("meta.yaml").exists() {
            bail!("no experiment {experiment_id} in {}", root.display());
        }
        // A fresh id: the time, the process and a counter, hashed (MLflow's are 32 hex
        // digits from a random UUID; only uniqueness matters).
        static COUNTER: std::sync::atomic::AtomicU64 =
            std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::digest(format!("{nanos} {} {n}", std::process::id()));
        let run_id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let dir = exp_dir.join(&run_id);
        for sub in ["params", "metrics", "tags", "artifacts"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let mut run = Run {
            backend: RunBackend::File { dir },
            run_id,
            experiment_id: experiment_id.to_string(),
            run_name: run_name.to_string(),
            start_time: start,
            ended: false,
        };
        run.set_tag("mlflow.runName", run_name)?;
        for (k, v) in tags {
            run.set_tag(k, v)?;
        }
        // Written last: until it exists, MLflow skips the folder.
        run.write_meta(RunStatus::Running, None)?;
        Ok(run)
    }

    /// Every run of experiment `experiment_id`, read back (runs without a readable
    /// `meta.yaml` skipped, as MLflow skips them), in start order.
    pub fn runs(&self, experiment_id: &str) -> Result<Vec<RunRecord>> {
        let root = match &self.store {
            Store::File(root) => root,
            Store::Rest(c) => {
                let mut out = c
                    .search_runs(experiment_id)?
                    .iter()
                    .map(|r| RunRecord::from_json(c, r))
                    .collect::<Result<Vec<_>>>()?;
                out.sort_by_key(|r| (r.start_time, r.run_id.clone()));
                return Ok(out);
            }
        };
        let exp_dir = root.join(experiment_id);
        let mut out = vec![];
        for entry in fs::read_dir(&exp_dir)
            .with_context(|| format!("listing {}", exp_dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() && path.join("meta.yaml").exists() {
                out.push(RunRecord::read(&path)?);
            }
        }
        out.sort_by_key(|r| (r.start_time, r.run_id.clone()));
        Ok(out)
    }
}

/// A run being logged. Dropped without [`Run::end`], it is marked failed (a panic
/// unwinding through the training loop ends here); a killed process leaves it running.
#[derive(Debug)]
pub struct Run {
    backend: RunBackend,
    run_id: String,
    experiment_id: String,
    run_name: String,
    start_time: i64,
    ended: bool,
}

impl Run {
    /// MLflow's id of the run (32 hex digits).
    pub fn id(&self) -> &str {
        &self.run_id
    }

    /// The run's folder in a file store (its artifacts are in `artifacts/` under it).
    pub fn dir(&self) -> Option<&Path> {
        match &self.backend {
            RunBackend::File { dir } => Some(dir),
            RunBackend::Rest { .. } => None,
        }
    }

    /// Writes the run's status: `meta.yaml` in a file store, `runs/update` on a server.
    fn write_meta(&self, status: RunStatus, end: Option<i64>) -> Result<()> {
        let dir = match &self.backend {
            RunBackend::File { dir } => dir,
            RunBackend::Rest { client, .. } => {
                return client.update_run(
                    &self.run_id,
                    status.name(),
                    end.unwrap_or_else(now_ms),
                )
            }
        };
        let meta = format!(
            "artifact_uri: file://{}\nend_time: {}\nentry_point_name: ''\n\
             experiment_id: '{}'\nlifecycle_stage: active\nrun_id: {id}\nrun_name: {}\n\
             run_uuid: {id}\nsource_name: ''\nsource_type: 4\nsource_version: ''\n\
             start_time: {}\nstatus: {}\ntags: []\nuser_id: dlbook\n",
            dir.join("artifacts").display(),
            end.map_or("null".to_string(), |t| t.to_string()),
            self.experiment_id,
            yaml_str(&self.run_name),
            self.start_time,
            status as i64,
            id = self.run_id,
        );
        write_atomic(&dir.join("meta.yaml"), meta.as_bytes())
    }

    /// Logs parameter `key`. Parameters are immutable in MLflow: logging a key again
    /// with another value is an error (the same value is accepted).
    pub fn log_param(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_PARAM_LEN {
            bail!(
                "parameter {key}: {} characters, MLflow keeps at most {MAX_PARAM_LEN}",
                value.len()
            );
        }
        let dir = match &self.backend {
            RunBackend::File { dir } => dir,
            // The server refuses a changed value itself (INVALID_PARAMETER_VALUE).
            RunBackend::Rest { client, .. } => {
                return client.log_batch(&self.run_id, &[(key, value)], &[], &[])
            }
        };
        let path = dir.join("params").join(key);
        if let Ok(old) = fs::read_to_string(&path) {
            if old != value {
                bail!("parameter {key} is already {old:?}; parameters cannot change within a run");
            }
            return Ok(());
        }
        write_atomic(&path, value.as_bytes())
    }

    /// Appends `value` of metric `key` at `step`, stamped now.
    pub fn log_metric(&mut self, key: &str, value: f64, step: i64) -> Result<()> {
        self.log_metrics(&[(key, value)], step)
    }

    /// Appends the values of several metrics at `step`, stamped now (one call to a
    /// server).
    pub fn log_metrics(&mut self, metrics: &[(&str, f64)], step: i64) -> Result<()> {
        for (key, _) in metrics {
            check_key(key)?;
        }
        let t = now_ms();
        match &self.backend {
            RunBackend::File { dir } => {
                for &(key, value) in metrics {
                    append_metric(dir, key, value, t, step)?;
                }
                Ok(())
            }
            RunBackend::Rest { client, .. } => {
                let points: Vec<_> =
                    metrics.iter().map(|&(k, v)| (k, v, t, step)).collect();
                client.log_batch(&self.run_id, &[], &points, &[])
            }
        }
    }

    /// Sets tag `key` (tags may change).
    pub fn set_tag(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        match &self.backend {
            RunBackend::File { dir } => {
                write_atomic(&dir.join("tags").join(key), value.as_bytes())
            }
            RunBackend::Rest { client, .. } => {
                client.log_batch(&self.run_id, &[], &[], &[(key, value)])
            }
        }
    }

    /// Copies the file `src` into the run's artifacts as `name` (on a server, through
    /// its artifact proxy).
    pub fn log_artifact(&mut self, src: &Path, name: &str) -> Result<()> {
        check_key(name)?;
        let bytes =
            fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        match &self.backend {
            RunBackend::File { dir } => {
                write_atomic(&dir.join("artifacts").join(name), &bytes)
            }
            RunBackend::Rest {
                client,
                artifact_uri,
            } => client.put_artifact(artifact_uri, name, &bytes),
        }
    }

    /// Ends the run with `status`.
    pub fn end(mut self, status: RunStatus) -> Result<()> {
        self.ended = true;
        self.write_meta(status, Some(now_ms()))
    }
}

/// Where a run's records go.
#[derive(Debug)]
enum RunBackend {
    File {
        dir: PathBuf,
    },
    Rest {
        client: RestClient,
        artifact_uri: String,
    },
}

/// Appends one value of metric `key` to run folder `dir`.
fn append_metric(dir: &Path, key: &str, value: f64, t: i64, step: i64) -> Result<()> {
    let path = dir.join("metrics").join(key);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // One line, one write call: a killed process wrote all of it or none.
    let line = format!("{t} {} {step}\n", fmt_value(value));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.ended {
            // Best effort: a drop cannot report an error.
            let _ = self.write_meta(RunStatus::Failed, Some(now_ms()));
        }
    }
}

/// A metric value as MLflow's file store writes it (Python's `repr` of a float for the
/// special values).
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}

/// One run as read back from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// MLflow's id.
    pub run_id: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: RunStatus,
    /// Start time, ms since 1970.
    pub start_time: i64,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Every metric's `(timestamp, value, step)` lines, in the order logged.
    pub metrics: BTreeMap<String, Vec<(i64, f64, i64)>>,
}

impl RunRecord {
    /// A run as a server's `runs/search` returns it, with each metric's whole history
    /// fetched.
    fn from_json(client: &RestClient, run: &Value) -> Result<RunRecord> {
        let info = run.get("info").context("a run without info")?;
        let run_id = rest::str_of(info, "run_id")?.to_string();
        let status_name = rest::str_of(info, "status")?;
        let status = RunStatus::from_name(status_name)
            .with_context(|| format!("run {run_id}: unknown status {status_name}"))?;
        let pairs = |k: &str| -> Result<BTreeMap<String, String>> {
            let mut m = BTreeMap::new();
            for kv in run
                .pointer(&format!("/data/{k}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                m.insert(
                    rest::str_of(kv, "key")?.to_string(),
                    rest::str_of(kv, "value")?.to_string(),
                );
            }
            Ok(m)
        };
        let mut metrics = BTreeMap::new();
        for m in run
            .pointer("/data/metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = rest::str_of(m, "key")?;
            metrics.insert(key.to_string(), client.metric_history(&run_id, key)?);
        }
        Ok(RunRecord {
            name: info
                .get("run_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            status,
            start_time: info.get("start_time").and_then(rest::i64_of).unwrap_or(0),
            params: pairs("params")?,
            tags: pairs("tags")?,
            metrics,
            run_id,
        })
    }

    /// Reads the run in folder `dir`; a malformed file is an error naming it.
    pub fn read(dir: &Path) -> Result<RunRecord> {
        let meta = read_yaml(&dir.join("meta.yaml"))?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .with_context(|| format!("{}: no {k}", dir.join("meta.yaml").display()))
        };
        let code: i64 = get("status")?.parse().context("status is a number")?;
        let status = RunStatus::from_code(code)
            .with_context(|| format!("{}: unknown status {code}", dir.display()))?;
        let files = |sub: &str| collect_files(&dir.join(sub));
        let mut metrics = BTreeMap::new();
        for (key, text) in files("metrics")? {
            let mut lines = vec![];
            for (i, line) in text.lines().enumerate() {
                let parts: Vec<&str> = line.split(' ').collect();
                let bad = || format!("metric {key}, line {}: {line:?}", i + 1);
                if parts.len() != 3 {
                    bail!(bad());
                }
                let v = match parts[1] {
                    "nan" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    s => s.parse().with_context(bad)?,
                };
                lines.push((
                    parts[0].parse().with_context(bad)?,
                    v,
                    parts[2].parse().with_context(bad)?,
                ));
            }
            metrics.insert(key, lines);
        }
        Ok(RunRecord {
            run_id: get("run_id")?,
            name: get("run_name")?,
            status,
            start_time: get("start_time")?
                .parse()
                .context("start_time is a number")?,
            params: files("params")?,
            tags: files("tags")?,
            metrics,
        })
    }
}

/// A run found by its id ([`Tracker::find_run`]).
#[derive(Clone, Debug)]
pub struct FoundRun {
    /// The run as logged.
    pub record: RunRecord,
    /// Where its artifacts are (`file://...` in a file store, `mlflow-artifacts:/...`
    /// on a server that proxies them).
    pub artifact_uri: String,
    /// The paths of its artifacts, relative to `artifact_uri`.
    pub artifacts: Vec<String>,
}

/// Calls `f` with the key (relative path, `/`-separated) and path of every file under
/// `dir`, skipping temporary files; a missing `dir` has none.
fn walk_files(
    dir: &Path,
    prefix: &str,
    f: &mut dyn FnMut(String, &Path) -> Result<()>,
) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in
        fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.path().is_dir() {
            walk_files(&entry.path(), &key, f)?;
        } else {
            f(key, &entry.path())?;
        }
    }
    Ok(())
}

/// The relative path of every file under `dir`, sorted.
pub(crate) fn file_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = vec![];
    walk_files(dir, "", &mut |key, _| {
        out.push(key);
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

/// Every file under `dir` (keys may contain `/`), by key, with its text.
pub(crate) fn collect_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    walk_files(dir, "", &mut |key, path| {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?;
        out.insert(key, text);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Tracker {
        let d = std::env::temp_dir()
            .join(format!("dlbook-track-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        Tracker::open(&d).unwrap()
    }

    #[test]
    fn a_run_reads_back_as_logged() {
        let t = store("roundtrip");
        let exp = t.experiment("mnist cnn").unwrap();
        assert_eq!(t.experiment("mnist cnn").unwrap(), exp, "found by name");
        let mut run = t
            .start_run(&exp, "seed 0", &[("git_commit", "abc123")])
            .unwrap();
        run.log_param("lr", "0.01").unwrap();
        run.log_param("lr", "0.01").unwrap();
        assert!(
            run.log_param("lr", "0.02").is_err(),
            "parameters are immutable"
        );
        for (step, loss) in [(0, 2.3), (1, 1.5), (2, f64::NAN)] {
            run.log_metric("train/loss", loss, step).unwrap();
        }
        let id = run.id().to_string();
        run.end(RunStatus::Finished).unwrap();
        let runs = t.runs(&exp).unwrap();
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(
            (r.run_id.as_str(), r.status),
            (id.as_str(), RunStatus::Finished)
        );
        assert_eq!(r.params["lr"], "0.01");
        assert_eq!(r.tags["git_commit"], "abc123");
        assert_eq!(r.tags["mlflow.runName"], "seed 0");
        let loss = &r.metrics["train/loss"];
        assert_eq!(loss.iter().map(|l| l.2).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!((loss[0].1, loss[1].1), (2.3, 1.5));
        assert!(loss[2].1.is_nan());
        assert_eq!(t.experiments().unwrap()[0], ("0".into(), "Default".into()));
    }

    #[test]
    fn bad_keys_are_errors_not_paths() {
        for key in [
            "",
            "../escape",
            "a/../../b",
            "/abs",
            "semi;colon",
            "a//b",
            &"k".repeat(251),
        ] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        for key in ["loss", "train/loss", "val acc", "lr-0.1_x"] {
            check_key(key).unwrap();
        }
    }

    #[test]
    fn a_dropped_run_is_marked_failed() {
        let t = store("dropped");
        let exp = t.experiment("e").unwrap();
        drop(t.start_run(&exp, "r", &[]).unwrap());
        assert_eq!(t.runs(&exp).unwrap()[0].status, RunStatus::Failed);
    }

    #[test]
    fn yaml_strings_round_trip() {
        for s in ["plain", "it's", "3.5", "true", " padded", "a: b"] {
            let d =
                std::env::temp_dir().join(format!("dlbook-yaml-{}", std::process::id()));
            fs::create_dir_all(&d).unwrap();
            let p = d.join("m.yaml");
            fs::write(&p, format!("name: {}\n", yaml_str(s))).unwrap();
            assert_eq!(read_yaml(&p).unwrap()["name"], s);
        }
    }
}
