//! Experiment `drift_tests`: how often each drift test cries wolf on data that did not
//! drift, and how often it notices a real shift, against the sample size.
//!
//! No drift: two disjoint samples of `n` images drawn from the MNIST test set; a shift:
//! the second sample's pixels get Gaussian noise (standard deviation `shift_noise`,
//! clipped to [0, 1]). The one-dimensional tests read each image's ink (its mean pixel);
//! the chi-square test reads the ink binned at the reference's deciles (the PSI's own
//! table); the MMD reads the images average-pooled to 7 × 7 (49 numbers). A test alarms
//! at p < `alpha`; the PSI at its usual "large shift" threshold 0.2. Each seed draws
//! `n_resamples` pairs of samples; the rates' spread is over the seeds.

use anyhow::Result;
use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::Serialize;

use super::common::band_series;
use super::{Experiment, Preset};
use crate::data::{data_ref, mnist_files, DataDir, Dataset, Split};
use crate::mlops::drift::{chi_square, ks_2samp, permutation_p, wasserstein, Mmd, Psi};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};

/// Experiment `drift_tests`, registered in [`super::all`].
pub struct DriftTests;

impl Experiment for DriftTests {
    const NAME: &'static str = "drift_tests";
    const CHAPTER: &'static str = "ch13";
    const TITLE: &'static str =
        "Drift tests on MNIST: false alarms without drift, power against pixel noise";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Images per sample (both samples the same size).
    pub sizes: Vec<usize>,
    /// Pairs of samples drawn per seed and size.
    pub n_resamples: usize,
    /// Significance level of every test.
    pub alpha: f64,
    /// PSI bins and its alarm threshold.
    pub psi_bins: usize,
    /// PSI above this is an alarm.
    pub psi_threshold: f64,
    /// Shuffles of the permutation tests (MMD, Wasserstein).
    pub n_permutations: usize,
    /// Standard deviation of the pixel noise of the shifted samples.
    pub shift_noise: f32,
    /// Seeds; each a new set of resamples.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            sizes: vec![25, 50, 100, 200, 400],
            n_resamples: 60,
            alpha: 0.05,
            psi_bins: 10,
            psi_threshold: 0.2,
            n_permutations: 100,
            shift_noise: 0.05,
            seeds: (0..5).collect(),
        }
    }

    fn quick() -> Self {
        Config {
            sizes: vec![25, 100],
            n_resamples: 12,
            n_permutations: 40,
            seeds: vec![0, 1],
            ..Self::full()
        }
    }
}

/// The tests, in table order.
pub const TESTS: [&str; 6] = [
    "PSI > 0.2",
    "KS, exact p",
    "KS, asymptotic p",
    "chi-square (ink deciles)",
    "Wasserstein (permutation p)",
    "MMD (7 × 7 images, permutation p)",
];

/// The tests' fact-name stems, in [`TESTS`] order.
pub const SLUGS: [&str; 6] = [
    "psi",
    "ks_exact",
    "ks_asymptotic",
    "chi_square",
    "wasserstein",
    "mmd",
];

/// Which of [`TESTS`] alarm on `x` against `y`: one flag each.
fn alarms(cfg: &Config, x: &Sample, y: &Sample, seed: u64) -> Result<[bool; 6]> {
    let psi = Psi {
        n_bins: cfg.psi_bins,
    }
    .fit(&x.ink)?;
    let ks = ks_2samp(&x.ink, &y.ink)?;
    let counts = |v: &[f64]| {
        let mut c = vec![0u64; psi.edges.len() + 1];
        v.iter()
            .for_each(|s| c[psi.edges.partition_point(|e| e <= s)] += 1);
        c
    };
    let chi = chi_square(&counts(&x.ink), &counts(&y.ink))?;
    let w = permutation_p(&x.ink, &y.ink, cfg.n_permutations, seed, wasserstein)?;
    let mmd = Mmd {
        n_permutations: cfg.n_permutations,
        seed,
    }
    .test(x.pooled.view(), y.pooled.view())?;
    Ok([
        psi.score(&y.ink)? > cfg.psi_threshold,
        ks.p_exact < cfg.alpha,
        ks.p_asymptotic < cfg.alpha,
        chi.p_value < cfg.alpha,
        w < cfg.alpha,
        mmd.p_value < cfg.alpha,
    ])
}

/// The features of a sample of images: ink, and the 7 × 7 average-pooled image.
struct Sample {
    ink: Vec<f64>,
    pooled: Array2<f64>,
}

/// The features of `images` (n × 784 pixels).
fn features(images: ArrayView2<f32>) -> Sample {
    let n = images.nrows();
    let ink = images
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&p| f64::from(p)).sum::<f64>() / 784.0)
        .collect();
    let pooled = Array2::from_shape_fn((n, 49), |(i, c)| {
        let (br, bc) = (c / 7 * 4, c % 7 * 4);
        let mut s = 0.0;
        for r in br..br + 4 {
            for k in bc..bc + 4 {
                s += f64::from(images[(i, r * 28 + k)]);
            }
        }
        s / 16.0
    });
    Sample { ink, pooled }
}

/// `images` with Gaussian noise of standard deviation `std`, clipped to [0, 1].
fn noisy(images: ArrayView2<f32>, std: f32, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let normal = Normal::new(0.0, std).expect("a finite, non-negative std");
    images.mapv(|p| (p + normal.sample(rng)).clamp(0.0, 1.0))
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let test = Dataset::mnist(dir, Split::Test, 10_000)?;
    let (imgs, labels) = mnist_files(Split::Test);
    r.data = vec![data_ref(imgs), data_ref(labels)];
    r.seeds = cfg.seeds.clone();
    let pixels = test.flat();
    // rates[shifted][test][size][seed]
    let mut rates =
        vec![vec![vec![vec![0.0; cfg.seeds.len()]; cfg.sizes.len()]; TESTS.len()]; 2];
    let bar = progress::bar((cfg.seeds.len() * cfg.sizes.len()) as u64, "drift tests");
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        for (ni, &n) in cfg.sizes.iter().enumerate() {
            let counts = (0..cfg.n_resamples)
                .into_par_iter()
                .map(|k| {
                    let s = seed * 1_000_003 + (n * 1_000 + k) as u64;
                    let mut rng = ChaCha8Rng::seed_from_u64(s);
                    let mut idx: Vec<usize> = (0..pixels.nrows()).collect();
                    idx.shuffle(&mut rng);
                    let pick = |i: &[usize]| pixels.select(ndarray::Axis(0), i);
                    let (a, b) = (pick(&idx[..n]), pick(&idx[n..2 * n]));
                    let x = features(a.view());
                    let same = alarms(cfg, &x, &features(b.view()), s)?;
                    let shifted =
                        features(noisy(b.view(), cfg.shift_noise, &mut rng).view());
                    Ok([same, alarms(cfg, &x, &shifted, s)?])
                })
                .collect::<Result<Vec<[[bool; 6]; 2]>>>()?;
            for (shift, per_shift) in rates.iter_mut().enumerate() {
                for (t, per_test) in per_shift.iter_mut().enumerate() {
                    let hits = counts.iter().filter(|c| c[shift][t]).count();
                    per_test[ni][si] = hits as f64 / cfg.n_resamples as f64;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let xs: Vec<f64> = cfg.sizes.iter().map(|&n| n as f64).collect();
    for (shift, (name, title, y_label)) in [
        (
            "false_alarms",
            format!(
                "False-alarm rate without drift (MNIST test vs MNIST test; alpha = {})",
                cfg.alpha
            ),
            "false-alarm rate",
        ),
        (
            "power",
            format!(
                "Power against pixel noise of std {} (mean ± std over seeds)",
                cfg.shift_noise
            ),
            "detection rate",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let series = TESTS
            .iter()
            .zip(&rates[shift])
            .map(|(t, per_size)| {
                // band_series wants one curve per seed: transpose size × seed.
                let curves: Vec<Vec<f64>> = (0..cfg.seeds.len())
                    .map(|s| per_size.iter().map(|v| v[s]).collect())
                    .collect();
                band_series(*t, &xs, &curves)
            })
            .collect();
        r.figures.push(Figure {
            name: name.into(),
            title,
            plot: Plot::Lines {
                x_label: "images per sample".into(),
                y_label: y_label.into(),
                x_scale: Scale::Log,
                y_scale: Scale::Linear,
                series,
            },
        });
        let mut columns = vec![col("test", Format::Int)];
        columns.extend(
            cfg.sizes
                .iter()
                .map(|n| col(&format!("n = {n}"), Format::Percent(1))),
        );
        r.tables.push(Table {
            name: name.into(),
            caption: format!(
                "{} of each test, mean ± std over {} seeds of {} resampled pairs each (alpha = {}; PSI: alarm above {})",
                if shift == 0 { "False-alarm rate on MNIST test vs MNIST test" } else { "Detection rate against pixel noise" },
                cfg.seeds.len(),
                cfg.n_resamples,
                cfg.alpha,
                cfg.psi_threshold
            ),
            columns,
            rows: TESTS
                .iter()
                .zip(&rates[shift])
                .map(|(t, per_size)| {
                    let mut row = vec![Value::Text((*t).into())];
                    row.extend(per_size.iter().map(|v| Value::Seeds(v.clone())));
                    row
                })
                .collect(),
        });
        for (t, per_size) in SLUGS.iter().zip(&rates[shift]) {
            for (n, v) in cfg.sizes.iter().zip(per_size) {
                r.fact(
                    &format!("{name}_{t}_{n}"),
                    Value::Seeds(v.clone()),
                    Format::Percent(1),
                );
            }
        }
    }
    Ok(())
}
