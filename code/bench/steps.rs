//! The timing loops shared by the benchmarks that train on batches of tokens (the
//! character LSTM of section 9.3, the GPT of section 11.3): throughput and CPU time
//! per 1,000 tokens over repeated runs, the per-operation profile of a training step,
//! and the table that shows it.

use std::time::Instant;

use anyhow::Result;

use super::{peak, process_cpu_seconds, thread_cpu_seconds, Clock};
use crate::progress;
use crate::report::{col, Format, Table, Value};
use crate::rnn::profile;

/// Runs `f` under a spinner saying `what`.
pub fn measuring<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let s = progress::spinner(what);
    let out = f();
    s.finish_and_clear();
    out
}

/// Tokens/s and CPU seconds per 1,000 tokens of `runs` runs of `steps` calls of `step`
/// (after one warm-up call), each call on a batch of `tokens_per_step` tokens, cycling
/// through `batches`, in the current thread pool.
pub fn time_steps<B>(
    runs: usize,
    steps: usize,
    tokens_per_step: f64,
    batches: &[B],
    step: &mut dyn FnMut(&B),
) -> (Vec<f64>, Vec<f64>) {
    try_time_steps(runs, steps, tokens_per_step, batches, &mut |b| {
        step(b);
        Ok(())
    })
    .expect("a step that cannot fail")
}

/// [`time_steps`] for a step that can fail (a framework's training step): the first
/// error ends the timing.
pub fn try_time_steps<B>(
    runs: usize,
    steps: usize,
    tokens_per_step: f64,
    batches: &[B],
    step: &mut dyn FnMut(&B) -> Result<()>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    step(&batches[0])?;
    let (mut rates, mut cpu) = (vec![], vec![]);
    for _ in 0..runs {
        let (t, c) = (Instant::now(), process_cpu_seconds());
        for b in batches.iter().cycle().take(steps) {
            step(b)?;
        }
        let tokens = steps as f64 * tokens_per_step;
        rates.push(tokens / t.elapsed().as_secs_f64());
        cpu.push((process_cpu_seconds() - c) / tokens * 1000.0);
    }
    Ok((rates, cpu))
}

/// The FMA peak in GFLOP/s on `threads` threads and on one, `runs` measurements each
/// of `iters` rounds per thread.
pub fn fma_peaks(runs: usize, threads: usize, iters: u64) -> (Vec<f64>, Vec<f64>) {
    let isa = peak::Isa::detect();
    let on = |t: usize| -> Vec<f64> {
        (0..runs).map(|_| peak::fma_gflops(isa, t, iters)).collect()
    };
    let n = measuring("FMA peak", || on(threads));
    let one = measuring("FMA peak, 1 thread", || on(1));
    (n, one)
}

/// Milliseconds per step of each operation timed by [`profile`] over `steps` calls of
/// `step` (after one warm-up call) on `clock`, then what no timer covered
/// (`other (untimed)`) and the step's total (`training step`).
pub fn profile_steps<B>(
    steps: usize,
    batches: &[B],
    clock: Clock,
    step: &mut dyn FnMut(&B),
) -> Vec<(String, f64)> {
    let now: fn() -> f64 = match clock {
        Clock::Wall => || Clock::Wall.now(),
        Clock::ThreadCpu => thread_cpu_seconds,
    };
    step(&batches[0]);
    profile::enable(now);
    let t = now();
    for b in batches.iter().cycle().take(steps) {
        step(b);
    }
    let total = now() - t;
    let ops = profile::disable();
    let per_step = |s: f64| 1e3 * s / steps as f64;
    let covered: f64 = ops.iter().map(|(_, s)| s).sum();
    let mut out: Vec<(String, f64)> = ops
        .into_iter()
        .map(|(name, s)| (name.to_string(), per_step(s)))
        .collect();
    out.push((
        "other (untimed)".into(),
        per_step((total - covered).max(0.0)),
    ));
    out.push(("training step".into(), per_step(total)));
    out
}

/// The per-operation table `name` of a training step of `what`: each operation's
/// milliseconds per step on `t` threads (`wall`) and its CPU milliseconds on one thread
/// (`cpu`), and its share of the one-thread step; `load` ends the caption.
pub fn profile_table(
    name: &str,
    what: &str,
    wall: &[(String, f64)],
    cpu: &[(String, f64)],
    t: usize,
    load: &str,
) -> Table {
    let step_cpu = cpu
        .iter()
        .find(|(n, _)| n == "training step")
        .map_or(f64::NAN, |(_, v)| *v);
    let rows = cpu
        .iter()
        .map(|(name, c)| {
            let w = wall
                .iter()
                .find(|(n, _)| n == name)
                .map_or(f64::NAN, |(_, v)| *v);
            vec![
                Value::from(name.as_str()),
                Value::Num(w),
                Value::Num(*c),
                Value::Num(c / step_cpu),
            ]
        })
        .collect();
    Table {
        name: name.into(),
        caption: format!(
            "Where a training step of {what} spends its time: milliseconds per step of \
             each operation, on {t} threads (wall clock) and on one thread (CPU time of \
             that thread), and its share of the one-thread step. {load}"
        ),
        columns: vec![
            col("operation", Format::Int),
            col(&format!("ms, {t} threads"), Format::Fixed(2)),
            col("CPU-ms, 1 thread", Format::Fixed(2)),
            col("share, 1 thread", Format::Percent(1)),
        ],
        rows,
    }
}
