//! The whole way from data to a served model in one command (`dlbook pipeline`): data
//! checks, tracked training, evaluation, a quality gate, registration, promotion, and
//! the reload of the server that follows the alias.
//!
//! ```text
//! data checks -> training -> evaluation -> gate -> registration -> promotion -> reload
//! ```
//!
//! - **Data checks.** Every MNIST file has the size and sha256 the catalog records; the
//!   images are 28 x 28 and as many as the labels; each split holds every digit and no
//!   other label; and no test image is byte for byte a training image (a test image
//!   seen in training measures memory, not generalisation). Images are compared by the
//!   sha256 of their pixels, so only exact copies count: MNIST has a few near-copies
//!   (the same digit shifted by a pixel), which this check does not look for.
//! - **Training** is the run `dlbook train mnist-cnn` makes: the book's recipe, tracked
//!   with its lineage (commit, data digest, configuration), the model file logged as its
//!   artifact.
//! - **Evaluation** loads that artifact back (what would be served) and measures its
//!   accuracy on the first `n_test` test images; the run records it (`eval/accuracy`)
//!   with the name of the evaluation set (`pipeline.eval_set`).
//! - **The gate** refuses a model below the absolute floor `min_accuracy`, and one below
//!   the version the alias names now. That version's accuracy is read from its run when
//!   the run was evaluated on the same set; otherwise its artifact is evaluated on this
//!   set, so the two numbers always measure the same thing. A tie passes.
//! - **Registration and promotion** make the model the next version and move the alias.
//! - **Reload.** A server started with `dlbook serve --registry` polls the alias and
//!   swaps in the new version by itself; given the server's URL, the pipeline waits
//!   until its `/readyz` reports the new version. If it does not within the timeout,
//!   the alias moves back to the version before, which the server still serves.
//!
//! A stage that fails stops the pipeline with a [`PipelineError`] naming the stage and
//! what was wrong. Nothing before registration writes to the registry, so a failure
//! there leaves it as it was; a run that was started stays in the tracker, tagged with
//! the gate's verdict.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::logging::{data_digest, git_commit, start_run};
use super::registry::{check_alias, check_model_name, register_run, Registry};
use super::registry::{ModelVersion, MODEL_ARTIFACT};
use super::tracking::{RunStatus, Tracker};
use crate::data::{self, DataDir, Dataset, FileReport, LabelledImages, Split};
use crate::models::{checkpoint, mnist_cnn, CnnConfig};
use crate::train::accuracy_on;
use crate::train::mnist::{train_and_save, Recipe};

/// The classes every MNIST split must hold.
const N_CLASSES: usize = 10;
/// Run tag: which images the run's `eval/accuracy` was measured on.
pub const TAG_EVAL_SET: &str = "pipeline.eval_set";
/// Run tag: the gate's verdict on the run's model.
pub const TAG_GATE: &str = "pipeline.gate";
/// Run metric: the accuracy of the logged model on the evaluation set.
pub const METRIC_EVAL: &str = "eval/accuracy";

// ANCHOR: config
/// What the pipeline trains, how strict its gate is, and where it promotes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// The registered model's name.
    pub model: String,
    /// The alias the gate compares against and promotion moves.
    pub alias: String,
    /// Training images (the first ones of the training file).
    pub n_train: usize,
    /// Evaluation images (the first ones of the test file).
    pub n_test: usize,
    /// Passes over the training images.
    pub n_epochs: usize,
    /// Images per training step.
    pub batch_size: usize,
    /// Seed of the initialization, batch order and dropout.
    pub seed: u64,
    /// Adam's learning rate.
    pub lr: f32,
    /// The absolute floor: no model below this accuracy is promoted.
    pub min_accuracy: f64,
    /// Test images allowed to be exact copies of training images.
    pub max_duplicates: usize,
    /// A server following the alias, whose `/readyz` must report the new version.
    pub server: Option<String>,
    /// How long to wait for that server, in milliseconds.
    pub server_timeout_ms: u64,
}

impl PipelineConfig {
    /// Seconds: 600 training images in batches of 16, one epoch, a floor of 50 % (for
    /// CI and tests).
    pub fn quick() -> Self {
        PipelineConfig {
            n_train: 600,
            n_test: 500,
            n_epochs: 1,
            batch_size: 16,
            min_accuracy: 0.5,
            ..Self::full()
        }
    }

    /// Minutes: the book's recipe (all 60,000 images, two epochs), a floor of 97 %.
    pub fn full() -> Self {
        let r = Recipe::new(2, 0);
        PipelineConfig {
            model: "mnist_cnn".into(),
            alias: "production".into(),
            n_train: r.n_train,
            n_test: r.n_test,
            n_epochs: r.n_epochs,
            batch_size: r.batch_size,
            seed: r.seed,
            lr: r.lr,
            min_accuracy: 0.97,
            max_duplicates: 0,
            server: None,
            server_timeout_ms: 30_000,
        }
    }
}
// ANCHOR_END: config

impl PipelineConfig {
    /// Checks the configuration before anything runs, so that no later stage fails on
    /// it.
    pub fn validate(&self) -> Result<()> {
        check_model_name(&self.model)?;
        check_alias(&self.alias)?;
        if [self.n_train, self.n_test, self.n_epochs, self.batch_size].contains(&0) {
            bail!(
                "n_train ({}), n_test ({}), n_epochs ({}) and batch_size ({}) must be at \
                 least 1",
                self.n_train,
                self.n_test,
                self.n_epochs,
                self.batch_size
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr {} must be a positive number", self.lr);
        }
        if !(0.0..=1.0).contains(&self.min_accuracy) {
            bail!("min_accuracy {} must lie in [0, 1]", self.min_accuracy);
        }
        if let Some(url) = &self.server {
            if !url.starts_with("http://") {
                bail!("server {url:?}: the server speaks plain HTTP (http://host:port)");
            }
        }
        Ok(())
    }

    /// The book's training recipe with this configuration's sizes and settings.
    pub fn recipe(&self) -> Recipe {
        Recipe {
            n_train: self.n_train,
            n_test: self.n_test,
            batch_size: self.batch_size,
            lr: self.lr,
            ..Recipe::new(self.n_epochs, self.seed)
        }
    }
}

/// The stages, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The configuration itself.
    Config,
    /// Files, shapes, labels and duplicates.
    DataChecks,
    /// The tracked training run.
    Training,
    /// The logged model on the test images.
    Evaluation,
    /// The floor and the comparison with the alias's version.
    Gate,
    /// The model as the next version.
    Registration,
    /// The alias moved.
    Promotion,
    /// The server reporting the new version.
    Reload,
}

impl Stage {
    /// Every stage after the configuration, in order.
    pub const ALL: [Stage; 7] = [
        Stage::DataChecks,
        Stage::Training,
        Stage::Evaluation,
        Stage::Gate,
        Stage::Registration,
        Stage::Promotion,
        Stage::Reload,
    ];

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Config => "configuration",
            Stage::DataChecks => "data checks",
            Stage::Training => "training",
            Stage::Evaluation => "evaluation",
            Stage::Gate => "quality gate",
            Stage::Registration => "registration",
            Stage::Promotion => "promotion",
            Stage::Reload => "reload",
        }
    }
}

/// A stage failed: which, and why.
#[derive(Debug)]
pub struct PipelineError {
    /// The stage that failed.
    pub stage: Stage,
    /// What was wrong.
    pub error: anyhow::Error,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the pipeline stopped at {}: {:#}",
            self.stage.name(),
            self.error
        )
    }
}

impl std::error::Error for PipelineError {}

/// Runs `f` as `stage`: a spinner while it works, its outcome as one line after, and
/// its error tagged with the stage.
fn stage<T>(
    stage: Stage,
    describe: impl FnOnce(&T) -> String,
    f: impl FnOnce() -> Result<T>,
) -> std::result::Result<T, PipelineError> {
    let n = Stage::ALL
        .iter()
        .position(|&s| s == stage)
        .map_or(0, |i| i + 1);
    let spinner = crate::progress::spinner(stage.name());
    let out = f();
    spinner.finish_and_clear();
    match out {
        Ok(v) => {
            crate::progress::println(format!(
                "[{n}/{}] {}: {}",
                Stage::ALL.len(),
                stage.name(),
                describe(&v)
            ));
            Ok(v)
        }
        Err(error) => {
            crate::progress::println(format!(
                "[{n}/{}] {}: FAILED",
                Stage::ALL.len(),
                stage.name()
            ));
            Err(PipelineError { stage, error })
        }
    }
}

/// What the data checks found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataFindings {
    /// Files checked against the catalog.
    pub files: usize,
    /// Images in the training and test files.
    pub n_train: usize,
    /// Images in the test file.
    pub n_test: usize,
    /// Images per label, training file.
    pub train_counts: Vec<usize>,
    /// Images per label, test file.
    pub test_counts: Vec<usize>,
    /// Test images that are exact copies of a training image.
    pub duplicates: usize,
    /// The first few such pairs, `(test index, training index)`.
    pub duplicate_pairs: Vec<(usize, usize)>,
}

/// Every MNIST file against the catalog (size and sha256); an error names each bad
/// file and what is wrong with it.
pub fn check_files(dir: &DataDir) -> Result<usize> {
    let reports: Vec<FileReport> = data::verify(dir, &["mnist"])?;
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.is_ok())
        .map(|r| {
            let path = dir.path(r.path);
            let want = data::catalog()
                .iter()
                .flat_map(|d| d.files)
                .find(|f| f.path == r.path)
                .map_or(0, |f| f.bytes);
            match std::fs::metadata(&path).map(|m| m.len()) {
                Ok(have) if have != want => format!(
                    "{}: {have} bytes where the catalog records {want} ({})",
                    path.display(),
                    r.status
                ),
                _ => format!("{}: {}", path.display(), r.status),
            }
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "{}; run `dlbook data fetch mnist` to replace {}",
            bad.join("; "),
            if bad.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(reports.len())
}

/// Images per label; an error if a label is missing or out of range.
fn label_counts(split: &str, labels: &[u8]) -> Result<Vec<usize>> {
    let mut counts = vec![0; N_CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        let l = usize::from(l);
        if l >= N_CLASSES {
            bail!("{split}: label {l} at index {i} is not a digit 0-9");
        }
        counts[l] += 1;
    }
    let missing: Vec<String> = (0..N_CLASSES)
        .filter(|&c| counts[c] == 0)
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        bail!("{split}: no image of label {}", missing.join(", "));
    }
    Ok(counts)
}

/// Test images that are byte-for-byte copies of a training image, as `(test index,
/// training index)` pairs (the first training copy), found by the sha256 of the pixels.
pub fn exact_duplicates(
    train: &LabelledImages,
    test: &LabelledImages,
) -> Vec<(usize, usize)> {
    let digest = |px: &[u8]| -> [u8; 32] { Sha256::digest(px).into() };
    let mut seen = std::collections::HashMap::with_capacity(train.images.n);
    for i in 0..train.images.n {
        seen.entry(digest(train.images.image(i))).or_insert(i);
    }
    (0..test.images.n)
        .filter_map(|j| seen.get(&digest(test.images.image(j))).map(|&i| (j, i)))
        .collect()
}

/// The checks on the images and labels of both splits: shapes, label sets, and exact
/// duplicates between them (more than `max_duplicates` is an error giving the count
/// and the first pairs).
pub fn check_splits(
    train: &LabelledImages,
    test: &LabelledImages,
    max_duplicates: usize,
) -> Result<DataFindings> {
    for (name, s) in [("training file", train), ("test file", test)] {
        let im = &s.images;
        if (im.rows, im.cols) != (28, 28) {
            bail!("{name}: images are {}x{}, expected 28x28", im.rows, im.cols);
        }
        if im.n != s.labels.len() {
            bail!("{name}: {} images but {} labels", im.n, s.labels.len());
        }
    }
    let train_counts = label_counts("training file", &train.labels)?;
    let test_counts = label_counts("test file", &test.labels)?;
    let pairs = exact_duplicates(train, test);
    if pairs.len() > max_duplicates {
        let shown: Vec<String> = pairs
            .iter()
            .take(5)
            .map(|(j, i)| format!("test {j} = train {i}"))
            .collect();
        bail!(
            "{} test images are exact copies of training images (at most {max_duplicates} \
             allowed): {}{}",
            pairs.len(),
            shown.join(", "),
            if pairs.len() > shown.len() { ", ..." } else { "" }
        );
    }
    Ok(DataFindings {
        files: 0,
        n_train: train.images.n,
        n_test: test.images.n,
        train_counts,
        test_counts,
        duplicates: pairs.len(),
        duplicate_pairs: pairs.into_iter().take(5).collect(),
    })
}

/// The data-check stage: the files, then the splits read from them.
pub fn check_data(
    dir: &DataDir,
    cfg: &PipelineConfig,
) -> Result<(DataFindings, LabelledImages)> {
    let files = check_files(dir)?;
    let train = data::mnist(dir, Split::Train)?;
    let test = data::mnist(dir, Split::Test)?;
    let mut findings = check_splits(&train, &test, cfg.max_duplicates)?;
    findings.files = files;
    for (what, want, have) in [
        ("training", cfg.n_train, train.images.n),
        ("test", cfg.n_test, test.images.n),
    ] {
        if want > have {
            bail!("the configuration asks for {want} {what} images; the file has {have}");
        }
    }
    Ok((findings, test))
}

/// The version an alias names now, and its accuracy on this evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// Its version number.
    pub version: u64,
    /// Its accuracy on the evaluation set.
    pub accuracy: f64,
    /// Whether that accuracy was read from its run (`true`) or measured now.
    pub recorded: bool,
}

/// What a pipeline that reached its end did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineOutcome {
    /// What the data checks found.
    pub data: DataFindings,
    /// The training run.
    pub run_id: String,
    /// The new model's accuracy on the evaluation set.
    pub accuracy: f64,
    /// The accuracy the training loop measured on the same images after its last epoch.
    pub training_accuracy: f64,
    /// The version the alias named before, if any.
    pub baseline: Option<Baseline>,
    /// The new version.
    pub version: u64,
    /// Whether a server was seen serving it.
    pub server_reloaded: bool,
}

/// The name of the evaluation set: the first `n` test images of the files with these
/// digests.
fn eval_set(n: usize) -> String {
    let (im, lab) = data::mnist_files(Split::Test);
    let refs = [data::data_ref(im), data::data_ref(lab)];
    let files: Vec<(String, String)> = refs
        .iter()
        .map(|d| (d.file.clone(), d.sha256.clone()))
        .collect();
    format!("mnist test[0..{n}] {}", &data_digest(&files)[..16])
}

/// The accuracy of the MNIST CNN in the model file `path` on `data`.
pub fn accuracy_of_file(path: &Path, data: &Dataset) -> Result<f64> {
    let mut model = mnist_cnn(&CnnConfig::default(), 0);
    checkpoint::load(&mut model, path)
        .with_context(|| format!("loading the MNIST CNN from {}", path.display()))?;
    Ok(accuracy_on(&mut model, data))
}

/// The version `alias` of `model` names, or `None` if the model or the alias does not
/// exist yet (any other failure to read the registry is an error).
pub fn current_version(
    registry: &Registry,
    model: &str,
    alias: &str,
) -> Result<Option<ModelVersion>> {
    let models = registry.models()?;
    let Some(m) = models.into_iter().find(|m| m.name == model) else {
        return Ok(None);
    };
    let Some(&v) = m.aliases.get(alias) else {
        return Ok(None);
    };
    m.versions
        .into_iter()
        .find(|x| x.version == v)
        .map(Some)
        .with_context(|| format!("{model}@{alias} names version {v}, which is missing"))
}

/// The accuracy of `version` on the evaluation set `set` (`data`): from its run when
/// that run was evaluated on the same set, else by evaluating its artifact.
fn baseline_of(
    tracker: &Tracker,
    registry: &Registry,
    version: &ModelVersion,
    set: &str,
    data: &Dataset,
    cache: &Path,
) -> Result<Baseline> {
    if let Ok(run) = tracker.find_run(&version.run_id) {
        let same_set = run.record.tags.get(TAG_EVAL_SET).map(String::as_str) == Some(set);
        let logged = run.record.metrics.get(METRIC_EVAL).and_then(|m| m.last());
        if let (true, Some(&(_, accuracy, _))) = (same_set, logged) {
            return Ok(Baseline {
                version: version.version,
                accuracy,
                recorded: true,
            });
        }
    }
    let path = registry.artifact(version, cache)?;
    let accuracy = accuracy_of_file(&path, data).with_context(|| {
        format!(
            "evaluating version {} of {} to compare with it",
            version.version, version.name
        )
    })?;
    Ok(Baseline {
        version: version.version,
        accuracy,
        recorded: false,
    })
}

/// The gate's rule: `Ok` if `accuracy` may be promoted over `baseline` with the floor
/// `min_accuracy`, else an error saying which bound it missed and by how much.
pub fn gate(accuracy: f64, min_accuracy: f64, baseline: Option<&Baseline>) -> Result<()> {
    if accuracy < min_accuracy {
        bail!(
            "refused: accuracy {:.2} % is below the floor of {:.2} %",
            100.0 * accuracy,
            100.0 * min_accuracy
        );
    }
    if let Some(b) = baseline {
        if accuracy < b.accuracy {
            bail!(
                "refused: accuracy {:.2} % is below the {:.2} % of version {} ({}), which \
                 stays where it is",
                100.0 * accuracy,
                100.0 * b.accuracy,
                b.version,
                if b.recorded {
                    "as its run recorded on the same images"
                } else {
                    "measured now on the same images"
                }
            );
        }
    }
    Ok(())
}

/// Waits until the server at `url` reports `version` of `model` on `/readyz`.
pub fn wait_for_version(
    url: &str,
    model: &str,
    version: u64,
    timeout: Duration,
) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let ready = format!("{}/readyz", url.trim_end_matches('/'));
    let want = version.to_string();
    let t0 = Instant::now();
    loop {
        let last = match agent.get(&ready).call() {
            Ok(mut resp) => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let v: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or_default();
                if v["model"] == model && v["version"] == want.as_str() {
                    return Ok(());
                }
                format!("{} {}", resp.status().as_u16(), body.trim())
            }
            Err(e) => e.to_string(),
        };
        if t0.elapsed() >= timeout {
            bail!(
                "{ready} did not report version {version} of {model} within {:.1} s (last \
                 answer: {last})",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ANCHOR: run
/// Runs the pipeline on the data in `dir`, tracking into `tracker` and promoting in its
/// registry; `code_dir` is the checkout whose commit the run records.
pub fn run(
    cfg: &PipelineConfig,
    dir: &DataDir,
    tracker: &Tracker,
    code_dir: &Path,
) -> std::result::Result<PipelineOutcome, PipelineError> {
    cfg.validate().map_err(|error| PipelineError {
        stage: Stage::Config,
        error,
    })?;
    let registry = Registry::of(tracker);
    let (data, test) = stage(Stage::DataChecks, describe_data, || check_data(dir, cfg))?;
    let set = eval_set(cfg.n_test);
    let work = Scratch::new()?;
    let (run, training_accuracy) = stage(
        Stage::Training,
        |(r, a): &(super::tracking::Run, f64)| {
            format!(
                "run {} in {}, test accuracy {:.2} %",
                r.id(),
                tracker.location(),
                100.0 * a
            )
        },
        || train(cfg, dir, tracker, code_dir, &work.0),
    )?;
    let mut run = run;
    let eval_data = Dataset::from_images(&test, cfg.n_test);
    let accuracy = stage(
        Stage::Evaluation,
        |a: &f64| format!("{:.2} % on {set}", 100.0 * a),
        || {
            let a = accuracy_of_file(&work.0.join(MODEL_ARTIFACT), &eval_data)?;
            run.set_tag(TAG_EVAL_SET, &set)?;
            run.log_metric(METRIC_EVAL, a, 0)?;
            Ok(a)
        },
    )?;
    let gated = stage(
        Stage::Gate,
        |b: &Option<Baseline>| match b {
            Some(b) => format!(
                "passed: {:.2} % >= {:.2} % of version {} and the floor {:.2} %",
                100.0 * accuracy,
                100.0 * b.accuracy,
                b.version,
                100.0 * cfg.min_accuracy
            ),
            None => format!(
                "passed: {:.2} % >= the floor {:.2} % (no {} version yet)",
                100.0 * accuracy,
                100.0 * cfg.min_accuracy,
                cfg.alias
            ),
        },
        || {
            let current = current_version(&registry, &cfg.model, &cfg.alias)?;
            let baseline = match &current {
                Some(v) => Some(baseline_of(
                    tracker, &registry, v, &set, &eval_data, &work.0,
                )?),
                None => None,
            };
            gate(accuracy, cfg.min_accuracy, baseline.as_ref())?;
            Ok(baseline)
        },
    );
    let verdict = match &gated {
        Ok(_) => "passed".to_string(),
        Err(e) => format!("{:#}", e.error),
    };
    // The run is whole whatever the verdict: it records it and ends.
    let run_id = run.id().to_string();
    let ended = run
        .set_tag(TAG_GATE, &verdict)
        .and_then(|()| run.end(RunStatus::Finished));
    let baseline = gated?;
    ended.map_err(|error| PipelineError {
        stage: Stage::Gate,
        error,
    })?;
    let version = stage(
        Stage::Registration,
        |v: &ModelVersion| {
            format!(
                "{} version {} in {}",
                v.name,
                v.version,
                registry.location()
            )
        },
        || register_run(tracker, &registry, &run_id, &cfg.model, MODEL_ARTIFACT),
    )?
    .version;
    stage(
        Stage::Promotion,
        |()| format!("{}@{} -> version {version}", cfg.model, cfg.alias),
        || registry.set_alias(&cfg.model, &cfg.alias, version),
    )?;
    let server_reloaded = stage(
        Stage::Reload,
        |seen: &bool| match (seen, &cfg.server) {
            (true, Some(url)) => format!("{url} serves version {version}"),
            _ => "no server given to wait for".into(),
        },
        || {
            reload(
                cfg,
                &registry,
                version,
                baseline.as_ref().map(|b| b.version),
            )
        },
    )?;
    Ok(PipelineOutcome {
        data,
        run_id,
        accuracy,
        training_accuracy,
        baseline,
        version,
        server_reloaded,
    })
}
// ANCHOR_END: run

fn describe_data((d, _): &(DataFindings, LabelledImages)) -> String {
    format!(
        "{} files as the catalog records them; {} training and {} test images of \
         28x28, every digit in both; {} test images are exact copies of training images",
        d.files, d.n_train, d.n_test, d.duplicates
    )
}

/// A folder of its own for the model file, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::result::Result<Scratch, PipelineError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dlbook-pipeline-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(|error| PipelineError {
                stage: Stage::Training,
                error,
            })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The training stage: the run `dlbook train mnist-cnn` makes, with the model file
/// logged as its artifact. Returns the open run and the last epoch's test accuracy.
fn train(
    cfg: &PipelineConfig,
    dir: &DataDir,
    tracker: &Tracker,
    code_dir: &Path,
    work: &Path,
) -> Result<(super::tracking::Run, f64)> {
    let recipe = cfg.recipe();
    let data: Vec<(String, String)> = data::mnist_refs()
        .iter()
        .map(|d| (d.file.clone(), d.sha256.clone()))
        .collect();
    let config = serde_json::json!({
        "n_epochs": recipe.n_epochs, "seed": recipe.seed,
        "n_train": recipe.n_train, "n_test": recipe.n_test,
        "batch_size": recipe.batch_size, "lr": recipe.lr,
    });
    let commit = git_commit(code_dir);
    let mut run = start_run(
        tracker,
        &cfg.model,
        &format!("pipeline seed {}", cfg.seed),
        &commit,
        &data,
        &config,
    )
    .with_context(|| format!("starting a run in {}", tracker.location()))?;
    run.set_tag("pipeline", "true")?;
    let out = work.join(MODEL_ARTIFACT);
    let accs = train_and_save(dir, &recipe, &out, None, None, Some(&mut run))?;
    run.log_artifact(&out, MODEL_ARTIFACT)?;
    let last = *accs.last().context("training ran no epoch")?;
    Ok((run, last))
}

/// The reload stage: with a server URL, waits for it to serve `version`; if it does
/// not, moves the alias back to `previous` and fails.
fn reload(
    cfg: &PipelineConfig,
    registry: &Registry,
    version: u64,
    previous: Option<u64>,
) -> Result<bool> {
    let Some(url) = &cfg.server else {
        return Ok(false);
    };
    let timeout = Duration::from_millis(cfg.server_timeout_ms);
    if let Err(e) = wait_for_version(url, &cfg.model, version, timeout) {
        let undo = match previous {
            Some(p) => match registry.set_alias(&cfg.model, &cfg.alias, p) {
                Ok(()) => format!(
                    "{}@{} moved back to version {p}; version {version} stays registered",
                    cfg.model, cfg.alias
                ),
                Err(e2) => format!(
                    "moving {} back to version {p} failed too: {e2:#}",
                    cfg.alias
                ),
            },
            None => format!(
                "{}@{} stays at version {version}: there was no version before it",
                cfg.model, cfg.alias
            ),
        };
        return Err(e.context(undo));
    }
    Ok(true)
}
