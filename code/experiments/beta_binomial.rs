//! Experiment `beta_binomial`: conjugate updating of a coin's bias, prior sensitivity,
//! a grid check of the closed forms, and the coverage of 95 % credible intervals.
//!
//! * A seeded Bernoulli(θ) stream; the posterior density after 0, 1, 5, 20 and 100
//!   observations, and the posterior mean and 95 % interval as `n` grows.
//! * Prior sensitivity: uniform, Jeffreys and two strong priors (one centred on the
//!   truth, one far from it), after a small and a large sample of the same stream.
//! * Ablation of prior strength: a prior centred away from the truth, made stronger.
//! * Grid check: the closed-form posterior against prior × likelihood on a fine grid.
//! * Coverage: over many seeded simulations, how often the 95 % interval contains θ,
//!   (a) when θ is drawn from the prior (Bayesian calibration: 95 % exactly, in
//!   expectation) and (b) for fixed θ (frequentist coverage), simulated and computed
//!   exactly by summing over the Binomial outcomes.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Experiment, Preset};
use crate::bayes::{binomial_pmf, Beta, GridPosterior};
use crate::data::DataDir;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `beta_binomial`, registered in [`super::all`].
pub struct BetaBinomial;

impl Experiment for BetaBinomial {
    const NAME: &'static str = "beta_binomial";
    const CHAPTER: &'static str = "ch01";
    const TITLE: &'static str = "Beta-Binomial updating, prior sensitivity and interval coverage";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The true success probability of the stream.
    pub theta: f64,
    /// Seed of the stream behind the figures and the sensitivity tables.
    pub stream_seed: u64,
    /// Numbers of observations at which the posterior density is drawn.
    pub checkpoints: Vec<u64>,
    /// Largest `n` of the interval-versus-`n` figure.
    pub max_n: u64,
    /// Points on each density curve.
    pub density_points: usize,
    /// Sample sizes of the prior-sensitivity table (small, large).
    pub sensitivity_n: Vec<u64>,
    /// Mean of the misplaced prior in the prior-strength ablation.
    pub ablation_prior_mean: f64,
    /// Strengths `α + β` of that prior.
    pub ablation_strengths: Vec<f64>,
    /// Sample sizes of the ablation.
    pub ablation_n: Vec<u64>,
    /// Credible level.
    pub level: f64,
    /// Cells of the grid posterior.
    pub grid_cells: usize,
    /// Seeds of the coverage simulations.
    pub seeds: Vec<u64>,
    /// Simulated data sets per seed and setting.
    pub sims_per_seed: usize,
    /// Trials per simulated data set when θ is drawn from the prior.
    pub prior_coverage_n: Vec<u64>,
    /// Fixed θ values of the frequentist-coverage table.
    pub fixed_thetas: Vec<f64>,
    /// Trials per data set in the frequentist-coverage table.
    pub fixed_n: Vec<u64>,
}

impl Preset for Config {
    /// Seconds: fewer seeds and simulations.
    fn quick() -> Self {
        Config {
            seeds: vec![0, 1, 2],
            sims_per_seed: 10_000,
            ..Self::full()
        }
    }

    /// The preset behind the book's numbers.
    fn full() -> Self {
        Config {
            theta: 0.3,
            stream_seed: 7,
            checkpoints: vec![0, 1, 5, 20, 100],
            max_n: 1000,
            density_points: 401,
            sensitivity_n: vec![10, 1000],
            ablation_prior_mean: 0.8,
            ablation_strengths: vec![2.0, 10.0, 50.0, 250.0],
            ablation_n: vec![20, 200],
            level: 0.95,
            grid_cells: 100_000,
            seeds: vec![0, 1, 2, 3, 4],
            sims_per_seed: 100_000,
            prior_coverage_n: vec![5, 50],
            fixed_thetas: vec![0.02, 0.1, 0.5],
            fixed_n: vec![10, 100],
        }
    }
}

/// The priors of the sensitivity table, by name.
pub fn sensitivity_priors(theta: f64) -> Vec<(String, Beta)> {
    vec![
        ("uniform Beta(1, 1)".into(), Beta::uniform()),
        ("Jeffreys Beta(½, ½)".into(), Beta::jeffreys()),
        (
            format!("strong, right: mean {theta}, strength 100"),
            Beta::from_mean_strength(theta, 100.0),
        ),
        (
            "strong, wrong: mean 0.8, strength 100".into(),
            Beta::from_mean_strength(0.8, 100.0),
        ),
    ]
}

/// A seeded Bernoulli(θ) stream of `n` outcomes.
pub fn bernoulli_stream(theta: f64, n: u64, seed: u64) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f64>() < theta).collect()
}

fn successes(stream: &[bool], n: u64) -> u64 {
    stream[..n as usize].iter().filter(|&&b| b).count() as u64
}

/// The credible interval of the posterior for every outcome `k = 0..=n`.
fn intervals_by_k(prior: &Beta, n: u64, level: f64) -> Vec<(f64, f64)> {
    (0..=n)
        .map(|k| prior.posterior(k, n).credible_interval(level))
        .collect()
}

/// Exact frequentist coverage at θ: `Σ_k P(k | n, θ) 1[θ ∈ interval(k)]`.
pub fn exact_coverage(prior: &Beta, theta: f64, n: u64, level: f64) -> f64 {
    intervals_by_k(prior, n, level)
        .iter()
        .enumerate()
        .filter(|(_, (lo, hi))| *lo <= theta && theta <= *hi)
        .map(|(k, _)| binomial_pmf(k as u64, n, theta))
        .sum()
}

/// Simulated coverage: the fraction of `sims` data sets whose interval contains θ, with
/// θ drawn from `prior` for each data set if `theta` is `None`.
pub fn simulated_coverage(
    prior: &Beta,
    theta: Option<f64>,
    n: u64,
    level: f64,
    sims: usize,
    seed: u64,
) -> f64 {
    let intervals = intervals_by_k(prior, n, level);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hits = 0usize;
    for _ in 0..sims {
        let t = theta.unwrap_or_else(|| prior.sample(&mut rng));
        let k = (0..n).filter(|_| rng.random::<f64>() < t).count();
        let (lo, hi) = intervals[k];
        hits += (lo <= t && t <= hi) as usize;
    }
    hits as f64 / sims as f64
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let theta = cfg.theta;
    let max_n = cfg
        .max_n
        .max(*cfg.sensitivity_n.iter().max().unwrap_or(&0))
        .max(*cfg.ablation_n.iter().max().unwrap_or(&0));
    let stream = bernoulli_stream(theta, max_n, cfg.stream_seed);
    let uniform = Beta::uniform();
    r.fact("theta", theta, Format::Fixed(2));

    // Posterior densities after the checkpoints.
    let xs: Vec<f64> = (0..cfg.density_points)
        .map(|i| i as f64 / (cfg.density_points - 1) as f64)
        .collect();
    let series = cfg
        .checkpoints
        .iter()
        .map(|&n| {
            let k = successes(&stream, n);
            let post = uniform.posterior(k, n);
            Series {
                name: format!("n = {n}, k = {k}"),
                x: xs.clone(),
                y: xs.iter().map(|&x| post.pdf(x)).collect(),
                band: None,
            }
        })
        .collect();
    r.figures.push(Figure {
        name: "sequential".into(),
        title: format!("Posterior of θ from a uniform prior; the coin has θ = {theta}"),
        plot: Plot::Lines {
            x_label: "θ".into(),
            y_label: "posterior density".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });
    let last = *cfg.checkpoints.last().unwrap_or(&0);
    let post_last = uniform.posterior(successes(&stream, last), last);
    let (lo, hi) = post_last.credible_interval(cfg.level);
    r.fact("last_n", last as f64, Format::Int);
    r.fact("last_k", successes(&stream, last) as f64, Format::Int);
    r.fact("last_mean", post_last.mean(), Format::Fixed(3));
    r.fact("last_lo", lo, Format::Fixed(3));
    r.fact("last_hi", hi, Format::Fixed(3));

    // Mean and interval as n grows (log-spaced n).
    let mut ns: Vec<u64> = (0..=60)
        .map(|i| (10f64.powf(3.0 * i as f64 / 60.0) * cfg.max_n as f64 / 1000.0).round())
        .map(|x| x.max(1.0) as u64)
        .collect();
    ns.dedup();
    let (mut mean, mut lower, mut upper) = (vec![], vec![], vec![]);
    for &n in &ns {
        let post = uniform.posterior(successes(&stream, n), n);
        let (l, u) = post.credible_interval(cfg.level);
        mean.push(post.mean());
        lower.push(l);
        upper.push(u);
    }
    let nx: Vec<f64> = ns.iter().map(|&n| n as f64).collect();
    let line = |name: String, y: Vec<f64>| Series {
        name,
        x: nx.clone(),
        y,
        band: None,
    };
    let pct = 100.0 * cfg.level;
    r.figures.push(Figure {
        name: "interval".into(),
        title: format!("Posterior mean and {pct:.0} % interval (uniform prior)"),
        plot: Plot::Lines {
            x_label: "observations n".into(),
            y_label: "θ".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: vec![
                line(format!("upper {pct:.0} % bound"), upper),
                line("posterior mean".into(), mean),
                line(format!("lower {pct:.0} % bound"), lower),
                line("true θ".into(), vec![theta; nx.len()]),
            ],
        },
    });

    // Prior sensitivity, and the grid check of each posterior.
    let f3 = Format::Fixed(3);
    let (mut rows, mut grid_rows) = (vec![], vec![]);
    let mut grid_max: f64 = 0.0;
    for (name, prior) in sensitivity_priors(theta) {
        for &n in &cfg.sensitivity_n {
            let k = successes(&stream, n);
            let post = prior.posterior(k, n);
            let (l, u) = post.credible_interval(cfg.level);
            rows.push(vec![
                Value::from(name.clone()),
                Value::Num(prior.mean()),
                Value::Num(n as f64),
                Value::Num(k as f64),
                Value::Num(post.mean()),
                Value::Num(l),
                Value::Num(u),
            ]);
            let grid = GridPosterior::new(|t| prior.ln_pdf(t), k, n, cfg.grid_cells);
            let (gl, gu) = grid.credible_interval(cfg.level);
            let errs = [
                (grid.mean() - post.mean()).abs(),
                (grid.variance().sqrt() - post.variance().sqrt()).abs(),
                (gl - l).abs(),
                (gu - u).abs(),
            ];
            grid_max = errs.iter().copied().fold(grid_max, f64::max);
            let mut row = vec![Value::from(name.clone()), Value::Num(n as f64)];
            row.extend(errs.iter().map(|&e| Value::Num(e)));
            grid_rows.push(row);
        }
    }
    r.tables.push(Table {
        name: "prior_sensitivity".into(),
        caption: format!(
            "Posterior mean and equal-tailed {pct:.0} % interval for four priors, after the \
             first n observations of one stream with θ = {theta}."
        ),
        columns: vec![
            col("prior", f3),
            col("prior mean", f3),
            col("n", Format::Int),
            col("k", Format::Int),
            col("posterior mean", f3),
            col("lower", f3),
            col("upper", f3),
        ],
        rows,
    });
    let sci = Format::Sci(1);
    r.tables.push(Table {
        name: "grid_check".into(),
        caption: format!(
            "Closed form against a grid posterior of {} cells: absolute differences of \
             mean, standard deviation and interval ends.",
            cfg.grid_cells
        ),
        columns: vec![
            col("prior", sci),
            col("n", Format::Int),
            col("Δ mean", sci),
            col("Δ sd", sci),
            col("Δ lower", sci),
            col("Δ upper", sci),
        ],
        rows: grid_rows,
    });
    r.fact("grid_max_error", grid_max, sci);

    // Ablation: a misplaced prior of growing strength.
    let mut rows = vec![];
    for &n in &cfg.ablation_n {
        let k = successes(&stream, n);
        for &s in &cfg.ablation_strengths {
            let prior = Beta::from_mean_strength(cfg.ablation_prior_mean, s);
            let post = prior.posterior(k, n);
            let (l, u) = post.credible_interval(cfg.level);
            let covers = if l <= theta && theta <= u {
                "yes"
            } else {
                "no"
            };
            rows.push(vec![
                Value::Num(s),
                Value::Num(n as f64),
                Value::Num(k as f64),
                Value::Num(s / (s + n as f64)),
                Value::Num(post.mean()),
                Value::Num(l),
                Value::Num(u),
                Value::from(covers),
            ]);
        }
    }
    r.tables.push(Table {
        name: "prior_strength".into(),
        caption: format!(
            "Ablation: a prior with mean {} (the truth is {theta}) and growing strength \
             α + β; w = (α + β)/(α + β + n) is the prior's weight in the posterior mean.",
            cfg.ablation_prior_mean
        ),
        columns: vec![
            col("strength α + β", Format::Int),
            col("n", Format::Int),
            col("k", Format::Int),
            col("prior weight w", f3),
            col("posterior mean", f3),
            col("lower", f3),
            col("upper", f3),
            col("covers θ", f3),
        ],
        rows,
    });

    // Coverage when θ is drawn from the prior.
    let pc = Format::Percent(2);
    let mut rows = vec![];
    for (name, prior) in sensitivity_priors(theta).into_iter().take(3) {
        for &n in &cfg.prior_coverage_n {
            let per_seed: Vec<f64> = cfg
                .seeds
                .iter()
                .map(|&seed| {
                    let seed = seed * 1_000 + n;
                    simulated_coverage(
                        &prior,
                        None,
                        n,
                        cfg.level,
                        cfg.sims_per_seed,
                        seed,
                    )
                })
                .collect();
            if name.starts_with("uniform") && n == cfg.prior_coverage_n[0] {
                r.fact("coverage_uniform", Value::Seeds(per_seed.clone()), pc);
            }
            rows.push(vec![
                Value::from(name.clone()),
                Value::Num(n as f64),
                Value::Seeds(per_seed),
            ]);
        }
    }
    r.tables.push(Table {
        name: "coverage_prior".into(),
        caption: format!(
            "Coverage of {pct:.0} % intervals when θ is drawn from the prior: mean ± std \
             over {} seeds of {} simulated data sets each.",
            cfg.seeds.len(),
            cfg.sims_per_seed
        ),
        columns: vec![col("prior", pc), col("n", Format::Int), col("coverage", pc)],
        rows,
    });

    // Frequentist coverage at fixed θ.
    let mut rows = vec![];
    let mut worst_gap: f64 = 0.0;
    for (name, prior) in sensitivity_priors(theta).into_iter().take(2) {
        for &t in &cfg.fixed_thetas {
            for &n in &cfg.fixed_n {
                let exact = exact_coverage(&prior, t, n, cfg.level);
                let per_seed: Vec<f64> = cfg
                    .seeds
                    .iter()
                    .map(|&seed| {
                        let seed = seed * 1_000 + 500 + n;
                        simulated_coverage(
                            &prior,
                            Some(t),
                            n,
                            cfg.level,
                            cfg.sims_per_seed,
                            seed,
                        )
                    })
                    .collect();
                let (m, _) = Value::mean_std(&per_seed);
                worst_gap = worst_gap.max((m - exact).abs());
                rows.push(vec![
                    Value::from(name.clone()),
                    Value::Num(t),
                    Value::Num(n as f64),
                    Value::Num(exact),
                    Value::Seeds(per_seed),
                ]);
            }
        }
    }
    r.fact("fixed_sim_vs_exact_gap", worst_gap, Format::Percent(2));
    r.tables.push(Table {
        name: "coverage_fixed".into(),
        caption: format!(
            "Frequentist coverage of {pct:.0} % intervals at a fixed θ: exact (a sum over \
             the n + 1 outcomes) and simulated (mean ± std over {} seeds of {} data sets).",
            cfg.seeds.len(),
            cfg.sims_per_seed
        ),
        columns: vec![
            col("prior", pc),
            col("θ", Format::Fixed(2)),
            col("n", Format::Int),
            col("exact coverage", pc),
            col("simulated coverage", pc),
        ],
        rows,
    });
    Ok(())
}
