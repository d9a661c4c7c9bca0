//! The book's experiments: one file each, with a serialisable `Config` whose [`Preset`]s
//! are `quick()` (seconds: used by `cargo test` and the notebooks) and `full()`
//! (minutes: used by `dlbook regen`), and a type implementing [`Experiment`] that states
//! the experiment's name, chapter and title once.
//!
//! [`all`] lists them; `dlbook regen chNN` runs the full presets of one chapter and
//! writes `chapters/generated/chNN/`.
//!
//! **Results cannot go stale.** Every committed result records the fingerprint of its
//! quick preset's outcome ([`Report::quick_fingerprint`]): a hash of the report the quick
//! preset gave, on the same code, when the full results were made. The test suite runs
//! every quick preset ([`quick`]) and [`check_fresh`] compares: a change anywhere in the
//! code (an optimizer, a layer, the data order) that changes what an experiment measures
//! changes its quick outcome, and the test fails with "results of X are stale: run
//! `dlbook regen X`". [`check_generated`] is the one check of the files themselves
//! (rendering, configuration, fingerprint present, nothing unowned), shared by `dlbook
//! regen --check` and the integrity test.
//!
//! Adding an experiment: a file here with a `Config` (`impl Preset for Config`), a
//! `run(cfg, dir, report)` that fills the report, a unit struct implementing
//! [`Experiment`], and one line in the `registry!` list below.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, ensure, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::data::DataDir;
use crate::report::Report;

pub mod common;

/// Declares the experiment modules and lists their experiments, in book order: one line
/// per experiment, `module::Type`. What [`all`] returns.
macro_rules! registry {
    ($($module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every experiment of the book, in chapter order.
        pub fn all() -> Vec<Entry> {
            vec![$(Entry::of::<$module::$ty>()),*]
        }
    };
}

registry! {
    // Week 1: mathematical foundations.
    pca_mnist::PcaMnist,
    information::Information,
    beta_binomial::BetaBinomial,
    diagnostic_test::DiagnosticTestExperiment,
    // Week 2: neural-network basics.
    autograd_graph::AutogradGraph,
    gradient_checks::GradientChecks,
    perceptron_xor::PerceptronXor,
    activations_mnist::ActivationsMnist,
    mse_vs_ce::MseVsCe,
    gradient_depth::GradientDepth,
    twin_mnist::TwinMnist,
    // Week 3: optimization and regularization.
    optim_surfaces::OptimSurfaces,
    optim_mnist::OptimMnist,
    regularization_ablation::RegularizationAblation,
    // Week 4: CNN fundamentals.
    receptive_fields::ReceptiveFields,
    cnn_features::CnnFeatures,
    frozen_filters::FrozenFilters,
    // Week 5: CNN architectures and the MNIST classifier.
    architectures::Architectures,
    residual_vs_plain::ResidualVsPlain,
    mnist_cnn::MnistCnn,
    cnn_ablation::CnnAblation,
    cnn_twin::CnnTwin,
    // Week 6: transfer learning.
    mobile_blocks::MobileBlocks,
    folder_digits::FolderDigits,
    pretrained_photos::PretrainedPhotos,
    transfer_fashion::TransferFashion,
    transfer_full::TransferFull,
    // Week 7: object detection.
    detection_metrics::DetectionMetrics,
    detector::Detector,
    detector_ablation::DetectorAblation,
    // Week 8: recurrent networks.
    gradient_through_time::GradientThroughTime,
    adding_problem::AddingProblem,
    adding_ablation::AddingAblation,
    // Week 9: sequence applications.
    forecast_baselines::ForecastBaselines,
    forecast_lstm::ForecastLstm,
    sequence_mnist::SequenceMnist,
    char_lstm::CharLstmExperiment,
    // Week 10: attention.
    attention_scale::AttentionScale,
    attention_vs_recurrence::AttentionVsRecurrence,
    // Week 11: Transformers.
    minilm_embeddings::MinilmEmbeddings,
    minilm_scratch::MinilmScratch,
    seq2seq_sort::Seq2SeqSort,
    ln_placement::LnPlacement,
    gpt_shakespeare::GptShakespeare,
    gpt_ablation::GptAblation,
    transformer_families::TransformerFamilies,
    minilm_finetune::MinilmFinetune,
    // Week 12: statistical machine learning.
    tsa_arima::TsaArima,
    pgm::Pgm,
    clustering::Clustering,
    svm_classify::SvmClassify,
    ensemble_breast_cancer::EnsembleBreastCancer,
    // Week 13: production.
    drift_tests::DriftTests,
    drift_stream::DriftStream,
    mlops_map::MlopsMap,
    // The data appendix.
    sweep_mnist::SweepMnist,
    datasets::Datasets,
}

/// Which preset to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Seconds: the preset `cargo test` and the notebooks use.
    Quick,
    /// Minutes: the preset behind the numbers in the book.
    Full,
}

/// The two sizes of an experiment's configuration.
pub trait Preset: Sized {
    /// Minutes: the configuration behind the numbers in the book.
    fn full() -> Self;

    /// Seconds: the configuration `cargo test` and the notebooks run. The full one
    /// unless the experiment says otherwise.
    fn quick() -> Self {
        Self::full()
    }

    /// The preset of `tier`.
    fn of(tier: Tier) -> Self {
        match tier {
            Tier::Quick => Self::quick(),
            Tier::Full => Self::full(),
        }
    }
}

// ANCHOR: experiment_trait
/// An experiment of the book: what it is called, where its results go, and how to run it.
pub trait Experiment: 'static {
    /// File stem of its results and its name on the command line (`pca_mnist`).
    const NAME: &'static str;
    /// The chapter whose `generated/` folder holds its results (`ch01`).
    const CHAPTER: &'static str;
    /// One line saying what it measures: the report's title.
    const TITLE: &'static str;
    /// What to run; serialised into the report.
    type Config: Preset + Serialize;

    /// Runs `cfg` and fills `report`, which arrives with its header (experiment,
    /// chapter, title and configuration) already set.
    fn run(cfg: &Self::Config, dir: &DataDir, report: &mut Report) -> Result<()>;

    /// Runs `cfg` and returns its report (with OpenBLAS single-threaded, so the
    /// outcome does not depend on what ran before it in the process).
    fn report(cfg: &Self::Config, dir: &DataDir) -> Result<Report> {
        crate::gemm::single_threaded_blas();
        let mut r = Report::new(Self::CHAPTER, Self::NAME, Self::TITLE);
        r.config = config_json(cfg);
        Self::run(cfg, dir, &mut r)?;
        Ok(r)
    }
}
// ANCHOR_END: experiment_trait

/// An experiment with its type erased, as [`all`] lists it.
#[derive(Clone, Copy)]
pub struct Entry {
    /// File stem of its results (`pca_mnist`).
    pub name: &'static str,
    /// The chapter whose `generated/` folder holds the results (`ch01`).
    pub chapter: &'static str,
    /// One line saying what it measures.
    pub title: &'static str,
    /// The configuration of a preset, as stored in the report.
    pub config: fn(Tier) -> serde_json::Value,
    /// Runs a preset.
    pub run: fn(Tier, &DataDir) -> Result<Report>,
}

impl Entry {
    /// The entry of experiment `E`.
    pub fn of<E: Experiment>() -> Entry {
        Entry {
            name: E::NAME,
            chapter: E::CHAPTER,
            title: E::TITLE,
            config: |t| config_json(&E::Config::of(t)),
            run: |t, d| E::report(&E::Config::of(t), d),
        }
    }

    /// Whether the quick preset is the full one (then one run serves both).
    pub fn quick_is_full(&self) -> bool {
        (self.config)(Tier::Quick) == (self.config)(Tier::Full)
    }
}

/// The experiments of one chapter (`ch01`), one experiment by name (`pca_mnist`), or
/// all of them for `all`.
pub fn of_chapter(chapter: &str) -> Vec<Entry> {
    all()
        .into_iter()
        .filter(|e| chapter == "all" || e.chapter == chapter || e.name == chapter)
        .collect()
}

/// The experiment called `name`.
pub fn by_name(name: &str) -> Result<Entry> {
    all()
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow!("there is no experiment called {name:?}"))
}

/// Serialises a config for a report.
pub fn config_json<T: Serialize>(cfg: &T) -> serde_json::Value {
    serde_json::to_value(cfg).expect("configs are plain data")
}

/// Whether `report` was made with the current full configuration of `e` (compared
/// after rounding, as the JSON stores it).
pub fn is_current(e: &Entry, report: &Report) -> bool {
    let want = Report {
        config: (e.config)(Tier::Full),
        ..report.clone()
    }
    .rounded();
    want.config == report.config
}

/// One quick run, done once: its report or its error.
type QuickRun = OnceLock<Result<Report, String>>;

/// The report of `name`'s quick preset, run once per process and shared by every caller
/// (the chapter tests and the staleness check read the same run). The data are
/// checksummed, so the first caller's `dir` serves them all.
pub fn quick(name: &str, dir: &DataDir) -> Result<&'static Report> {
    static RUNS: OnceLock<Mutex<HashMap<String, &'static QuickRun>>> = OnceLock::new();
    let e = by_name(name)?;
    let cell = *RUNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_string())
        .or_insert_with(|| Box::leak(Box::default()));
    cell.get_or_init(|| (e.run)(Tier::Quick, dir).map_err(|err| format!("{err:#}")))
        .as_ref()
        .map_err(|err| anyhow!("the quick preset of {name} failed: {err}"))
}

/// The fingerprint of a quick outcome: the first 16 hex digits of the sha256 of the
/// report's canonical JSON (rounded floats, sorted keys; its own fingerprint left out).
pub fn fingerprint(quick: &Report) -> String {
    let json = Report {
        quick_fingerprint: None,
        ..quick.clone()
    }
    .to_json();
    let hash = Sha256::digest(json.as_bytes());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The committed full run of the experiment `name`, from
/// `chapters/generated/<chapter>/<name>.json` of the book at `root`. An error unless the
/// file exists and was made with the experiment's current full configuration (`dlbook
/// regen <name>` refreshes it). The tests that check the book's numbers read them so.
pub fn committed(root: &Path, name: &str) -> Result<Report> {
    let e = by_name(name)?;
    let path = crate::book::generated_dir(root)
        .join(e.chapter)
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|err| {
        anyhow!("{}: {err} (run `dlbook regen {name}`)", path.display())
    })?;
    let report = Report::from_json(&text)?;
    ensure!(
        is_current(&e, &report),
        "{}: made with another configuration than the current full(); run `dlbook regen \
         {name}`",
        path.display()
    );
    Ok(report)
}

/// Fails unless the committed results of `name` were made by the code as it is now: the
/// fingerprint they record must equal the fingerprint of `quick`, this code's quick
/// outcome (see the module docs).
pub fn check_fresh(root: &Path, name: &str, quick: &Report) -> Result<()> {
    let committed = committed(root, name)?;
    let now = fingerprint(quick);
    match committed.quick_fingerprint {
        None => Err(anyhow!(
            "results of {name} record no quick fingerprint: run `dlbook regen {name}`"
        )),
        Some(was) if was != now => Err(anyhow!(
            "results of {name} are stale: the code now gives another quick outcome \
             (fingerprint {now}, the committed results were made when it was {was}); run \
             `dlbook regen {name}`"
        )),
        Some(_) => Ok(()),
    }
}

/// Runs the full preset of `e` and records the fingerprint of its quick outcome (the
/// full run's own, when the quick preset is the full one). What `dlbook regen` writes.
pub fn run_full(e: &Entry, dir: &DataDir) -> Result<Report> {
    let mut full =
        (e.run)(Tier::Full, dir).with_context(|| format!("experiment {}", e.name))?;
    let quick = if e.quick_is_full() {
        full.clone()
    } else {
        (e.run)(Tier::Quick, dir)
            .with_context(|| format!("experiment {} (quick preset)", e.name))?
    };
    full.quick_fingerprint = Some(fingerprint(&quick));
    Ok(full)
}

/// The one check of the generated files of `chapter` (`all`, `chNN` or an experiment's
/// name) in the book at `root`: every file is the rendering of its JSON, every JSON names
/// its experiment, was made with today's full configuration and records its quick
/// fingerprint, every timing report renders, and no file in a checked folder (every
/// folder, for `all`) is unowned. Returns the problems, each as `chNN/file: what is
/// wrong`. `dlbook regen --check` and the integrity test both call it.
pub fn check_generated(root: &Path, chapter: &str) -> Result<Vec<String>> {
    let gen = crate::book::generated_dir(root);
    let exps = of_chapter(chapter);
    let timings: Vec<(&str, &str)> = crate::bench::TIMINGS
        .iter()
        .map(|t| (t.chapter, t.stem))
        .filter(|t| chapter == "all" || t.0 == chapter || t.1 == chapter)
        .collect();
    ensure!(
        !exps.is_empty() || !timings.is_empty(),
        "no experiments for `{chapter}` (expected ch01 ... ch13, an experiment's name, or all)"
    );
    let mut problems = vec![];
    let mut owned = BTreeSet::new();
    let mut folders = BTreeSet::new();
    let reports = exps
        .iter()
        .map(|e| (e.chapter, e.name, Some(e)))
        .chain(timings.iter().map(|&(ch, name)| (ch, name, None)));
    for (ch, name, entry) in reports {
        folders.insert(ch.to_string());
        let (report, p) = match Report::check_dir(&gen.join(ch), name) {
            Ok(x) => x,
            Err(err) => {
                problems.push(format!(
                    "{ch}/{name}.json: {err:#} (run `dlbook regen {name}`)"
                ));
                continue;
            }
        };
        problems.extend(p.into_iter().map(|p| format!("{ch}/{p}")));
        if report.experiment != name || report.chapter != ch {
            problems.push(format!("{ch}/{name}.json: names another experiment"));
        }
        for file in report.file_names() {
            owned.insert(format!("{ch}/{file}"));
        }
        let Some(e) = entry else { continue };
        if !is_current(e, &report) {
            problems.push(format!(
                "{ch}/{name}.json: made with another configuration than the current full() \
                 (run `dlbook regen {name}`)"
            ));
        }
        if report.quick_fingerprint.is_none() {
            problems.push(format!(
                "{ch}/{name}.json: records no quick fingerprint (run `dlbook regen {name}`)"
            ));
        }
    }
    if chapter == "all" && gen.is_dir() {
        for entry in std::fs::read_dir(&gen)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                folders.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    for ch in &folders {
        let Ok(entries) = std::fs::read_dir(gen.join(ch)) else {
            continue;
        };
        for entry in entries {
            let file = format!("{ch}/{}", entry?.file_name().to_string_lossy());
            if !owned.contains(&file) {
                problems.push(format!("{file}: no experiment writes this file"));
            }
        }
    }
    problems.sort();
    Ok(problems)
}
