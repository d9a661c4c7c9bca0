//! The timing reports of `dlbook bench`, one entry each: the name it is asked for by,
//! the chapter folder its report goes to, and how it is run. `dlbook bench --name NAME`
//! looks its name up here, and the check of the generated files
//! ([`crate::experiments::check_generated`]) reads the same list to know which timing
//! reports a chapter owns.

use std::path::Path;

use anyhow::{Context, Result};

use super::arima::ArimaBenchConfig;
use super::backbone::BackboneConfig;
use super::char_lstm::CharLstmBenchConfig;
use super::cluster::ClusterBenchConfig;
use super::depthwise::DepthwiseConfig;
use super::detector::DetectorBenchConfig;
use super::ensemble::EnsembleBenchConfig;
use super::gpt::GptBenchConfig;
use super::hmm::HmmBenchConfig;
use super::mha::MhaBenchConfig;
use super::minilm::MiniLmBenchConfig;
use super::monitor::WatchConfig;
use super::rnn_cells::RnnCellsConfig;
use super::serve::ServeLoadConfig;
use super::Config;
use crate::data::DataDir;
use crate::report::Report;

/// What the command line asks of every benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The preset of seconds (checks that everything works; not for the book).
    pub quick: bool,
    /// Runs per figure, instead of the preset's.
    pub runs: Option<usize>,
    /// Threads of the multi-threaded figures, instead of the preset's.
    pub threads: Option<usize>,
}

/// One timing report.
pub struct Timing {
    /// Its file stem in the chapter's generated folder, and the name `--name` takes.
    pub stem: &'static str,
    /// Other names `--name` accepts for it.
    pub aliases: &'static [&'static str],
    /// The chapter folder of its report (`chNN`).
    pub chapter: &'static str,
    /// What it times, in a few words.
    pub what: &'static str,
    /// Runs it; the report is named `stem` and will be written to the folder given.
    pub run: fn(&Options, &DataDir, &Path) -> Result<Report>,
}

/// A benchmark's configuration: its two presets, and the runs and threads the command
/// line may override.
trait Knobs: Sized {
    fn quick() -> Self;
    fn full() -> Self;
    fn knobs(&mut self) -> (&mut usize, &mut usize);
}

macro_rules! knobs {
    ($($t:ty),* $(,)?) => {$(
        impl Knobs for $t {
            fn quick() -> Self {
                <$t>::quick()
            }
            fn full() -> Self {
                <$t>::full()
            }
            fn knobs(&mut self) -> (&mut usize, &mut usize) {
                (&mut self.runs, &mut self.threads)
            }
        }
    )*};
}

knobs!(
    Config,
    BackboneConfig,
    DepthwiseConfig,
    DetectorBenchConfig,
    RnnCellsConfig,
    CharLstmBenchConfig,
    MhaBenchConfig,
    MiniLmBenchConfig,
    GptBenchConfig,
    HmmBenchConfig,
    ClusterBenchConfig,
    EnsembleBenchConfig,
    ServeLoadConfig,
    ArimaBenchConfig,
    WatchConfig,
);

/// The preset `o` asks for, with its overrides (at least one run and one thread).
fn configured<C: Knobs>(o: &Options) -> C {
    let mut c = if o.quick { C::quick() } else { C::full() };
    let (runs, threads) = c.knobs();
    *runs = o.runs.unwrap_or(*runs).max(1);
    *threads = o.threads.unwrap_or(*threads).max(1);
    c
}

/// The configuration of chapter 5's benchmark as `o` asks for it (also what
/// `dlbook bench --profile` profiles).
pub fn seed_cnn_config(o: &Options) -> Config {
    configured(o)
}

/// Chapter 5's benchmark, named `stem`: the "after" figures are compared with the
/// "before" ones (`throughput_baseline`) if those were measured earlier into `out`.
fn seed_cnn(o: &Options, stem: &str, out: &Path) -> Result<Report> {
    let base_path = out.join("throughput_baseline.json");
    let baseline = match std::fs::read_to_string(&base_path) {
        Ok(text) if stem != "throughput_baseline" => Some(
            Report::from_json(&text)
                .with_context(|| format!("reading {}", base_path.display()))?,
        ),
        _ => None,
    };
    super::run(&configured(o), stem, baseline.as_ref())
}

/// Every timing report of the book, in chapter order.
pub const TIMINGS: &[Timing] = &[
    Timing {
        stem: "throughput",
        aliases: &[],
        chapter: "ch05",
        what: "the seed MNIST CNN: training and inference, per-layer profile, SGEMM, FMA peak",
        run: |o, _, out| seed_cnn(o, "throughput", out),
    },
    Timing {
        stem: "throughput_baseline",
        aliases: &[],
        chapter: "ch05",
        what: "the same, before the optimisations (the \"before\" figures)",
        run: |o, _, out| seed_cnn(o, "throughput_baseline", out),
    },
    Timing {
        stem: "backbone",
        aliases: &[],
        chapter: "ch06",
        what: "EfficientNet-Lite0, from scratch and in candle",
        run: |o, dir, _| super::backbone::run(&configured(o), dir, "backbone"),
    },
    Timing {
        stem: "depthwise",
        aliases: &[],
        chapter: "ch06",
        what: "the depthwise convolution",
        run: |o, _, _| super::depthwise::run(&configured(o), "depthwise"),
    },
    Timing {
        stem: "detector_speed",
        aliases: &[],
        chapter: "ch07",
        what: "the detector: training throughput and one-canvas latency",
        run: |o, dir, _| super::detector::run(&configured(o), dir, "detector_speed"),
    },
    Timing {
        stem: "rnn_cells",
        aliases: &[],
        chapter: "ch08",
        what: "the recurrent layers, from scratch and in candle",
        run: |o, _, _| super::rnn_cells::run(&configured(o), "rnn_cells"),
    },
    Timing {
        stem: "char_lstm_speed",
        aliases: &[],
        chapter: "ch09",
        what: "the character LSTM, from scratch and in candle, with its profile",
        run: |o, dir, _| super::char_lstm::run(&configured(o), dir, "char_lstm_speed"),
    },
    Timing {
        stem: "char_lstm_budget",
        aliases: &[],
        chapter: "ch09",
        what: "the character LSTM trained for ten minutes",
        run: |o, dir, _| super::char_lstm::run_budget(&configured(o), dir, "char_lstm_budget"),
    },
    Timing {
        stem: "mha",
        aliases: &[],
        chapter: "ch10",
        what: "multi-head attention, from scratch and in candle, and the lookup models' steps",
        run: |o, _, _| super::mha::run(&configured(o), "mha"),
    },
    Timing {
        stem: "minilm",
        aliases: &[],
        chapter: "ch11",
        what: "the MiniLM sentence encoder, from scratch and in candle",
        run: |o, dir, _| super::minilm::run(&configured(o), dir, "minilm"),
    },
    Timing {
        stem: "gpt_speed",
        aliases: &["gpt"],
        chapter: "ch11",
        what: "the GPT, from scratch and in candle, with and without its KV cache",
        run: |o, dir, _| super::gpt::run(&configured(o), dir, "gpt_speed"),
    },
    Timing {
        stem: "gpt_budget",
        aliases: &[],
        chapter: "ch11",
        what: "the GPT trained for ten minutes, once per seed",
        run: |o, dir, _| super::gpt::run_budget(&configured(o), dir, "gpt_budget"),
    },
    Timing {
        stem: "hmm_speed",
        aliases: &[],
        chapter: "ch12",
        what: "the hidden Markov model on a million observations, ours and hmmlearn's",
        run: |o, _, _| super::hmm::run(&configured(o), "hmm_speed"),
    },
    Timing {
        stem: "arima_speed",
        aliases: &["arima"],
        chapter: "ch12",
        what: "ARIMA fits and the order search, ours and statsmodels'",
        run: |o, dir, _| super::arima::run(&configured(o), dir, "arima_speed"),
    },
    Timing {
        stem: "cluster_speed",
        aliases: &["cluster"],
        chapter: "ch12",
        what: "k-means, DBSCAN and Ward linkage against scikit-learn",
        run: |o, dir, _| super::cluster::run(&configured(o), dir, "cluster_speed"),
    },
    Timing {
        stem: "svm_speed",
        aliases: &[],
        chapter: "ch12",
        what: "the RBF SVC, ours and scikit-learn's, on breast cancer and MNIST 10k",
        run: |o, dir, out| super::svm::run(o.quick, dir, out),
    },
    Timing {
        stem: "ensemble_speed",
        aliases: &[],
        chapter: "ch12",
        what: "trees and ensembles against scikit-learn and XGBoost",
        run: |o, dir, _| super::ensemble::run(&configured(o), dir, "ensemble_speed"),
    },
    Timing {
        stem: "serve_load",
        aliases: &["serve"],
        chapter: "ch13",
        what: "the model server under wrk's load at 1, 8 and 64 connections, beside FastAPI",
        run: |o, dir, _| super::serve::run(&configured(o), dir, "serve_load"),
    },
    Timing {
        stem: "serve_monitor",
        aliases: &["dashboard"],
        chapter: "ch13",
        what: "the server's drift monitor on clean then thickened digits, and its dashboard",
        run: |o, dir, _| super::monitor::run(&configured(o), dir, "serve_monitor"),
    },
];

/// The timing report `name` asks for (its stem or an alias), or an error listing them.
pub fn find(name: &str) -> Result<&'static Timing> {
    TIMINGS
        .iter()
        .find(|t| t.stem == name || t.aliases.contains(&name))
        .ok_or_else(|| {
            let names: Vec<&str> = TIMINGS.iter().map(|t| t.stem).collect();
            anyhow::anyhow!(
                "no benchmark named `{name}`; the benchmarks are: {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_find_their_report_and_others_are_a_clear_error() {
        assert_eq!(find("gpt").unwrap().stem, "gpt_speed");
        assert_eq!(find("gpt_budget").unwrap().chapter, "ch11");
        let err = find("gtp").err().expect("no such benchmark").to_string();
        assert!(
            err.contains("`gtp`") && err.contains("char_lstm_budget"),
            "{err}"
        );
        let mut stems: Vec<&str> = TIMINGS.iter().map(|t| t.stem).collect();
        stems.sort_unstable();
        stems.dedup();
        assert_eq!(
            stems.len(),
            TIMINGS.len(),
            "two timing reports share a stem"
        );
    }

    #[test]
    fn the_command_line_overrides_runs_and_threads_but_never_to_zero() {
        let o = Options {
            quick: true,
            runs: Some(0),
            threads: Some(3),
        };
        let c: GptBenchConfig = configured(&o);
        assert_eq!((c.runs, c.threads), (1, 3));
        assert_eq!(c.model, GptBenchConfig::quick().model);
        let c: MhaBenchConfig = configured(&Options::default());
        assert_eq!(c, MhaBenchConfig::full());
    }
}
