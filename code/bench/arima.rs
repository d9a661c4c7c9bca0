//! `dlbook bench --name arima_speed`: the ARIMA fits of section 12.4, ours and
//! statsmodels' `ARIMA(...).fit()` (when `python3` can import it; the report says why
//! not otherwise) on the same series, in one run: the airline model on log
//! AirPassengers, ARIMA(2,1,2) on sunspots, and the order search over $p, q \le 3$ with
//! $d = 1$ on sunspots (sixteen fits). Both sides fit by exact maximum likelihood and
//! compute standard errors; each row also shows the log-likelihood each side reached
//! (the best of the search), so that speed is never bought with a worse optimum.
//!
//! Each figure is the median of `runs` runs after a warm-up, in CPU seconds of the
//! process (insensitive to other load on the machine, as both sides run on one
//! thread: ours in a one-thread pool, statsmodels with its BLAS held to one thread) and
//! wall seconds, with the load average before and after. Never asserted by tests.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::python;
use super::{load_average, time_cpu_wall, CpuWall};
use crate::data::DataDir;
use crate::progress;
use crate::report::{col, Format, Report, Table, Value};
use crate::seq::{load, Named};
use crate::tsa::{order_search, Arima, Order, Trend};

/// What to time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArimaBenchConfig {
    /// Largest $p$ and $q$ of the order search.
    pub max_order: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads of our side (statsmodels' fits are single-threaded).
    pub threads: usize,
}

impl ArimaBenchConfig {
    /// Seconds: one run, a search over $p, q \le 1$.
    pub fn quick() -> Self {
        ArimaBenchConfig {
            max_order: 1,
            runs: 1,
            ..Self::full()
        }
    }

    /// The figures of the book.
    pub fn full() -> Self {
        ArimaBenchConfig {
            max_order: 3,
            runs: 5,
            threads: 1,
        }
    }
}

const STATSMODELS_SCRIPT: &str = include_str!("arima_statsmodels.py");

#[derive(Deserialize)]
struct Theirs {
    version: String,
    airline: CpuWall,
    sunspots: CpuWall,
    search: CpuWall,
    llf: [f64; 3],
}

/// statsmodels on the same series, or why it could not run.
fn statsmodels(cfg: &ArimaBenchConfig, air: &[f64], sun: &[f64]) -> Result<Theirs> {
    let input = serde_json::json!({
        "air": air,
        "sun": sun,
        "runs": cfg.runs,
        "max_order": cfg.max_order,
    });
    let env = [
        ("OMP_NUM_THREADS", "1".to_string()),
        ("OPENBLAS_NUM_THREADS", "1".to_string()),
        ("MKL_NUM_THREADS", "1".to_string()),
    ];
    let out = python::run(
        STATSMODELS_SCRIPT,
        &[],
        &env,
        Some(input.to_string().as_bytes()),
    )?;
    serde_json::from_str(&out).context("reading statsmodels' timings")
}

/// The best log-likelihood of the order search on `sun`.
fn search_best(sun: &[f64], max_order: usize) -> Result<f64> {
    Ok(order_search(sun, 1, Trend::None, max_order, max_order)?
        .iter()
        .map(|r| r.llf)
        .fold(f64::NEG_INFINITY, f64::max))
}

/// Times ours and statsmodels' and returns the report `name` (chapter `ch12`).
pub fn run(cfg: &ArimaBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let air = load(dir, Named::AirPassengers)?.values;
    let sun = load(dir, Named::Sunspots)?.values;
    let log_air: Vec<f64> = air.iter().map(|v| v.ln()).collect();
    let airline = Arima::new(Order::new(0, 1, 1).seasonal(0, 1, 1, 12));
    let sun212 = Arima::new(Order::new(2, 1, 2));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .context("building the benchmark's thread pool")?;
    let spinner = progress::spinner("bench");
    spinner.set_message("ours");
    // One untimed pass for the answers (and any error); the timed runs repeat it.
    let (ours_llf, ours) = pool.install(|| -> Result<_> {
        let llf = [
            airline.fit(&log_air)?.llf,
            sun212.fit(&sun)?.llf,
            search_best(&sun, cfg.max_order)?,
        ];
        let times = [
            time_cpu_wall(cfg.runs, || {
                std::hint::black_box(airline.fit(&log_air).ok());
            }),
            time_cpu_wall(cfg.runs, || {
                std::hint::black_box(sun212.fit(&sun).ok());
            }),
            time_cpu_wall(cfg.runs, || {
                std::hint::black_box(search_best(&sun, cfg.max_order).ok());
            }),
        ];
        Ok((llf, times))
    })?;
    spinner.set_message("statsmodels");
    let theirs = statsmodels(cfg, &air, &sun);
    spinner.finish_and_clear();
    let tasks = [
        "airline model (0,1,1)x(0,1,1)_12, log AirPassengers".to_string(),
        "ARIMA(2,1,2), sunspots".to_string(),
        format!(
            "order search, p, q <= {} with d = 1, sunspots ({} fits)",
            cfg.max_order,
            (cfg.max_order + 1).pow(2)
        ),
    ];
    let mut rows = vec![];
    for (i, task) in tasks.iter().enumerate() {
        let o = &ours[i];
        let t = theirs.as_ref().ok().map(|t| {
            let times = [&t.airline, &t.sunspots, &t.search][i];
            (times, t.llf[i])
        });
        let num_or = |v: Option<f64>, none: &str| v.map_or(Value::from(none), Value::Num);
        rows.push(vec![
            Value::from(task.as_str()),
            Value::Num(o.cpu_median()),
            Value::Num(o.wall_median()),
            num_or(t.map(|t| t.0.cpu_median()), "not run"),
            num_or(t.map(|t| t.0.wall_median()), "not run"),
            num_or(t.map(|t| t.0.cpu_median() / o.cpu_median()), "–"),
            Value::Num(ours_llf[i]),
            num_or(t.map(|t| t.1), "–"),
        ]);
    }
    let who = match &theirs {
        Ok(t) => format!("statsmodels {}", t.version),
        Err(e) => format!("statsmodels not run ({e})"),
    };
    let mut rep = Report::new(
        "ch12",
        name,
        "ARIMA by exact maximum likelihood: ours and statsmodels'",
    );
    rep.config = serde_json::to_value(cfg)?;
    let f4 = Format::Fixed(4);
    rep.tables.push(Table {
        name: "arima_speed".into(),
        caption: format!(
            "Seconds per fit (standard errors included on both sides), median of {} runs \
             after a warm-up; CPU seconds of the process and wall seconds; ours on {} \
             thread(s), {who} (`ARIMA(...).fit()`, one thread) on the same series in the \
             same run. Speed-up: their CPU seconds over ours. Log-likelihood: the maximum \
             each side reached (for the search, the best of its fits). Load average \
             {load_before:.1} before, {:.1} after.",
            cfg.runs,
            cfg.threads,
            load_average()
        ),
        columns: vec![
            col("fit", f4),
            col("ours, CPU s", f4),
            col("ours, wall s", f4),
            col("statsmodels, CPU s", f4),
            col("statsmodels, wall s", f4),
            col("speed-up (CPU)", Format::Fixed(1)),
            col("log-likelihood, ours", Format::Fixed(3)),
            col("log-likelihood, statsmodels", Format::Fixed(3)),
        ],
        rows,
    });
    Ok(rep)
}
