//! `dlbook bench --name hmm_speed`: the hidden Markov model of section 12.5 on one long
//! sequence: the scaled forward pass, Viterbi, posteriors (forward and backward) and one
//! Baum-Welch iteration, ours and hmmlearn's `CategoricalHMM` (scaling implementation,
//! when `python3` can import it; the report says why not otherwise) on the same model
//! and the same sequence, in one run. Each figure is the median of `runs` runs after a
//! warm-up, in CPU seconds of the process (insensitive to the machine's load, as both
//! sides run on one thread) and wall seconds, with the load average before and after.
//! Never asserted by tests.

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::python;
use super::{load_average, time_cpu_wall, CpuWall};
use crate::pgm::Hmm;
use crate::progress;
use crate::report::{col, Format, Report, Table, Value};

/// The reference figures for hmmlearn 0.3.3 on 1,000,000 observations
/// (seconds), quoted beside the measured ones, never measured by the book.
pub const HMMLEARN_REFERENCE: [(&str, f64); 4] = [
    ("forward", 0.067),
    ("Viterbi", 0.070),
    ("posteriors", 0.104),
    ("one Baum-Welch iteration", 0.168),
];

/// What to time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HmmBenchConfig {
    /// Observations in the sequence.
    pub n_obs: usize,
    /// Hidden states.
    pub n_states: usize,
    /// Symbols.
    pub n_symbols: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads (the HMM's recursions are sequential: always one is used).
    pub threads: usize,
    /// Seed of the model and the sequence.
    pub seed: u64,
}

impl HmmBenchConfig {
    /// A small run that exercises every measurement.
    pub fn quick() -> Self {
        HmmBenchConfig {
            n_obs: 10_000,
            runs: 1,
            ..Self::full()
        }
    }

    /// The figures of the book: the sequence length.
    pub fn full() -> Self {
        HmmBenchConfig {
            n_obs: 1_000_000,
            n_states: 4,
            n_symbols: 8,
            runs: 5,
            threads: 1,
            seed: 0,
        }
    }
}

const HMMLEARN_SCRIPT: &str = include_str!("hmm_hmmlearn.py");

#[derive(Deserialize)]
struct Theirs {
    version: String,
    forward: CpuWall,
    viterbi: CpuWall,
    posteriors: CpuWall,
    baum_welch: CpuWall,
}

/// hmmlearn on the same model and sequence, or why it could not run.
fn hmmlearn(cfg: &HmmBenchConfig, hmm: &Hmm, obs: &[usize]) -> Result<Theirs> {
    let input = serde_json::json!({
        "start": hmm.start(),
        "trans": hmm.trans().rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        "emit": hmm.emit().rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        "obs": obs,
        "runs": cfg.runs,
    });
    let env = [
        ("OMP_NUM_THREADS", "1".to_string()),
        ("OPENBLAS_NUM_THREADS", "1".to_string()),
    ];
    let out = python::run(
        HMMLEARN_SCRIPT,
        &[],
        &env,
        Some(input.to_string().as_bytes()),
    )?;
    serde_json::from_str(&out).context("reading hmmlearn's timings")
}

/// Times ours and hmmlearn's and returns the report `name` (chapter `ch12`).
pub fn run(cfg: &HmmBenchConfig, name: &str) -> Result<Report> {
    let load_before = load_average();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let hmm = Hmm::random(cfg.n_states, cfg.n_symbols, &mut rng);
    let (_, obs) = hmm.sample(cfg.n_obs, &mut rng);
    let seqs = vec![obs.clone()];
    let spinner = progress::spinner("bench");
    spinner.set_message("ours");
    let ours = [
        time_cpu_wall(cfg.runs, || {
            std::hint::black_box(hmm.log_likelihood(&obs));
        }),
        time_cpu_wall(cfg.runs, || {
            std::hint::black_box(hmm.viterbi(&obs));
        }),
        time_cpu_wall(cfg.runs, || {
            std::hint::black_box(hmm.posteriors(&obs));
        }),
        time_cpu_wall(cfg.runs, || {
            std::hint::black_box(hmm.baum_welch_step(&seqs));
        }),
    ];
    spinner.set_message("hmmlearn");
    let theirs = hmmlearn(cfg, &hmm, &obs);
    spinner.finish_and_clear();
    let mut rows = vec![];
    let theirs_list: Option<[&CpuWall; 4]> = theirs
        .as_ref()
        .ok()
        .map(|t| [&t.forward, &t.viterbi, &t.posteriors, &t.baum_welch]);
    for (i, (what, reference)) in HMMLEARN_REFERENCE.iter().enumerate() {
        let o = &ours[i];
        let (tc, tw) = match theirs_list {
            Some(t) => (
                Value::Num(t[i].cpu_median()),
                Value::Num(t[i].wall_median()),
            ),
            None => (Value::from("not run"), Value::from("not run")),
        };
        let speedup = match theirs_list {
            Some(t) => Value::Num(t[i].cpu_median() / o.cpu_median()),
            None => Value::from("–"),
        };
        rows.push(vec![
            Value::from(*what),
            Value::Num(o.cpu_median()),
            Value::Num(o.wall_median()),
            tc,
            tw,
            speedup,
            Value::Num(*reference),
        ]);
    }
    let who = match &theirs {
        Ok(t) => format!("hmmlearn {}", t.version),
        Err(e) => format!("hmmlearn not run ({e})"),
    };
    let mut rep = Report::new(
        "ch12",
        name,
        "Hidden Markov model on one long sequence: ours and hmmlearn's",
    );
    rep.config = serde_json::to_value(cfg)?;
    rep.seeds = vec![cfg.seed];
    let f3 = Format::Fixed(4);
    rep.tables.push(Table {
        name: "hmm_speed".into(),
        caption: format!(
            "A random {}-state HMM over {} symbols on one sequence of {} observations drawn \
             from it: seconds per call, median of {} runs after a warm-up, one thread on both \
             sides; CPU seconds of the process and wall seconds; {who} (CategoricalHMM, \
             scaling implementation) on the same model and sequence in the same run, and the \
             issue's reference figures for it. Speed-up: their CPU seconds over ours. Load \
             average {load_before:.1} before, {:.1} after.",
            cfg.n_states,
            cfg.n_symbols,
            cfg.n_obs,
            cfg.runs,
            load_average()
        ),
        columns: vec![
            col("operation", f3),
            col("ours, CPU s", f3),
            col("ours, wall s", f3),
            col("hmmlearn, CPU s", f3),
            col("hmmlearn, wall s", f3),
            col("speed-up (CPU)", Format::Fixed(1)),
            col("reference, s", Format::Fixed(3)),
        ],
        rows,
    });
    Ok(rep)
}
