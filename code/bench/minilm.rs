//! `dlbook bench --name minilm`: all-MiniLM-L6-v2 in candle and from scratch
//! ([`ScratchMiniLm`]: tokenization, the encoder, mean pooling and normalisation) in
//! sentences per second, on short real sentences at
//! batch 1 and batch 32, on a fixed number of threads. Median, min and max over the
//! runs, the time to load the model (sha256 checks included), and the load average
//! before and after; written to `generated/ch11/minilm.{json,md}` and never asserted by
//! tests.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::data::DataDir;
use crate::experiments::minilm_embeddings::{TOKEN_EXAMPLES, TRIPLES};
use crate::models::bert::CandleMiniLm;
use crate::progress;
use crate::report::Report;
use crate::transformer::bert::ScratchMiniLm;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MiniLmBenchConfig {
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Sentences embedded per timed run (whole batches, at least one).
    pub sentences: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads of the pool candle's matrix products run on.
    pub threads: usize,
}

impl MiniLmBenchConfig {
    /// A run of seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        MiniLmBenchConfig {
            batches: vec![1, 4],
            sentences: 4,
            runs: 1,
            threads: 2,
        }
    }

    /// The figures in the book.
    pub fn full() -> Self {
        MiniLmBenchConfig {
            batches: vec![1, 32],
            sentences: 64,
            runs: 5,
            threads: 2,
        }
    }
}

/// The benchmark's sentences: chapter 11's example sentences, repeated to `n`.
pub fn sentences(n: usize) -> Vec<&'static str> {
    let all: Vec<&str> = TRIPLES
        .iter()
        .flatten()
        .chain(TOKEN_EXAMPLES.iter())
        .copied()
        .collect();
    all.iter().cycle().take(n).copied().collect()
}

/// Runs the benchmark; the report is named `name`.
pub fn run(cfg: &MiniLmBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    // candle's CPU matrix products split their work over the current rayon pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let spinner = progress::spinner("bench");
    spinner.set_message("loading all-MiniLM-L6-v2");
    let t = std::time::Instant::now();
    let model = CandleMiniLm::load(dir)?;
    let load_secs = t.elapsed().as_secs_f64();
    let mut rows = vec![];
    for &batch in &cfg.batches {
        let n = cfg.sentences.max(batch).div_ceil(batch) * batch;
        let text = sentences(n);
        spinner.set_message(format!("batch {batch}"));
        let mut err = None;
        let secs = pool.install(|| {
            time_runs(cfg.runs, || {
                for chunk in text.chunks(batch) {
                    if let Err(e) = model.embed(chunk) {
                        err = Some(e);
                    }
                }
            })
        });
        if let Some(e) = err {
            return Err(e);
        }
        let per_s: Vec<f64> = secs.iter().map(|s| n as f64 / s).collect();
        rows.push(row(&format!("batch {batch}"), &per_s, "sentences/s"));
    }
    // the same sentences through the from-scratch encoder (ndarray, one thread of BLAS)
    spinner.set_message("loading the from-scratch encoder");
    let mut scratch = ScratchMiniLm::load(dir)?;
    for &batch in &cfg.batches {
        let n = cfg.sentences.max(batch).div_ceil(batch) * batch;
        let text = sentences(n);
        spinner.set_message(format!("from scratch, batch {batch}"));
        let mut err = None;
        let secs = pool.install(|| {
            time_runs(cfg.runs, || {
                for chunk in text.chunks(batch) {
                    if let Err(e) = scratch.embed(chunk) {
                        err = Some(e);
                    }
                }
            })
        });
        if let Some(e) = err {
            return Err(e);
        }
        let per_s: Vec<f64> = secs.iter().map(|s| n as f64 / s).collect();
        rows.push(row(
            &format!("from scratch, batch {batch}"),
            &per_s,
            "sentences/s",
        ));
    }
    spinner.finish_and_clear();
    rows.push(row(
        "load (sha256 checks, tokenizer, weights)",
        &[load_secs],
        "s",
    ));
    let mut rep = Report::new(
        "ch11",
        name,
        "all-MiniLM-L6-v2 in candle and from scratch: sentence embeddings per second",
    );
    rep.config = serde_json::to_value(cfg)?;
    let caption = format!(
        "all-MiniLM-L6-v2 in candle (`batch`) and from scratch on this chapter's blocks \
         (`from scratch, batch`), on the short English sentences of the section's examples: \
         tokenization, the encoder, mean pooling and normalisation, sentences per second: \
         median, min and max over {} runs of {} or more sentences, on {} threads; the \
         load is one measurement. Load average {load_before:.1} before, {:.1} after.",
        cfg.runs,
        cfg.sentences,
        cfg.threads,
        load_average()
    );
    rep.tables.push(summary_table("minilm", caption, 1, rows));
    Ok(rep)
}
