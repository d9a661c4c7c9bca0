//! Experiment `pca_mnist`: principal components of the 60,000 MNIST training digits.
//!
//! Pixels are scaled to $[0, 1]$ and each image is a vector in $\mathbb{R}^{784}$. The
//! covariance is diagonalised by the from-scratch [`eigh_jacobi`]; LAPACK and power
//! iteration solve the same covariance for the solver ablation, and a PCA without
//! centring is the other ablation. Everything is deterministic except the choice of the
//! points in the scatter plot, which is seeded.
//!
//! Reconstruction errors are computed exactly from the scores: for an orthonormal basis
//! $V_k$, $\lVert x - \hat x\rVert^2 = \lVert x - \mu\rVert^2 -
//! \lVert V_k^\top (x - \mu)\rVert^2$.

use anyhow::Result;
use ndarray::{s, Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{self, DataDir, Dataset, Split};
use crate::linalg::{
    covariance, eigh_jacobi, eigh_jacobi_with, lapack, normalize_signs,
    subspace_distance, top_k_power, FittedPca, JacobiOptions, PowerOptions, Solver,
};
use crate::report::{col, Figure, Format, Group, Plot, Report, Scale, Series, Table};

/// Experiment `pca_mnist`, registered in [`super::all`].
pub struct PcaMnist;

impl Experiment for PcaMnist {
    const NAME: &'static str = "pca_mnist";
    const CHAPTER: &'static str = "ch01";
    const TITLE: &'static str = "PCA of the MNIST training digits (covariance + from-scratch Jacobi)";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training images used for the fit (the first ones; MNIST has 60,000).
    pub n_train: usize,
    /// Numbers of components in the variance table.
    pub table_ks: Vec<usize>,
    /// Numbers of components in the centring ablation.
    pub ablation_ks: Vec<usize>,
    /// Numbers of components of the reconstruction figure.
    pub recon_ks: Vec<usize>,
    /// Digits shown in the reconstruction figure: the first test image of each label.
    pub recon_digits: Vec<u8>,
    /// Training points drawn in the scatter plot.
    pub n_scatter: usize,
    /// Eigensolver of the centring ablation (LAPACK, to keep the test fast: the
    /// ablation is about centring, and the solver ablation shows the solvers agree).
    pub ablation_solver: Solver,
    /// Eigenpairs found by power iteration in the solver ablation.
    pub power_k: usize,
    /// Relative residual at which power iteration stops.
    pub power_tol: f64,
    /// Seed of the scatter subsample and of the power-iteration start vectors.
    pub seed: u64,
}

impl Preset for Config {
    /// The book's configuration: all 60,000 training images.
    fn full() -> Self {
        Config {
            n_train: 60_000,
            table_ks: vec![1, 2, 5, 10, 20, 50, 100, 200],
            ablation_ks: vec![1, 2, 5, 10, 50],
            recon_ks: vec![1, 5, 10, 50, 100],
            recon_digits: vec![0, 1, 2, 3, 5, 8],
            n_scatter: 2000,
            ablation_solver: Solver::Lapack,
            power_k: 10,
            power_tol: 1e-10,
            seed: 0,
        }
    }

    /// The test configuration: the same as [`Config::full`] (it runs in about 20 s), so
    /// the test checks the very numbers the book prints.
    fn quick() -> Self {
        Self::full()
    }
}

/// Images as an `(n, 784)` matrix of `f64` in `[0, 1]`. PCA is statistics, so it runs in
/// `f64`: each `f32` pixel is a byte `p` over 255, and `p` (recovered exactly by
/// rounding) is divided by 255 again in `f64`.
fn as_f64(images: &Dataset) -> Array2<f64> {
    images
        .flat()
        .mapv(|v| f64::from((v * 255.0).round()) / 255.0)
}

/// Mean squared reconstruction error per pixel for every `k` in `1..=k_max`: entry
/// `k - 1` is $\frac{1}{Nd}\sum_n \lVert x_n - \hat x_n \rVert^2$ with `k` components.
fn mse_by_k(pca: &FittedPca, x: &Array2<f64>, k_max: usize) -> Vec<f64> {
    let (n, d) = x.dim();
    let pca = pca.truncated(k_max);
    let z = pca.transform(x); // (n, k_max)
    let centred = x - &pca.mean().view().insert_axis(Axis(0));
    let total: f64 = centred.iter().map(|v| v * v).sum();
    let per_k = z.map_axis(Axis(0), |c| c.dot(&c)); // (k_max,)
    let mut kept = 0.0;
    per_k
        .iter()
        .map(|zz| {
            kept += zz;
            (total - kept) / (n * d) as f64
        })
        .collect()
}

fn to_pixels(row: ndarray::ArrayView1<f64>) -> Vec<u8> {
    row.iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, usize::MAX)?;
    let n_train = train.len();
    let x = as_f64(&train);
    let x_test = as_f64(&test);
    let d = x.ncols();

    for split in [Split::Train, Split::Test] {
        let (im, lab) = data::mnist_files(split);
        r.data.push(data::data_ref(im));
        r.data.push(data::data_ref(lab));
    }
    r.seeds = vec![cfg.seed];

    // The fit: covariance, then all 784 eigenpairs by Jacobi.
    let (mean, cov) = covariance(&x, true)?;
    let (mut eig, sweeps) = eigh_jacobi_with(&cov, &JacobiOptions::default());
    let sweeps = sweeps.ok_or_else(|| anyhow::anyhow!("Jacobi did not converge"))?;
    normalize_signs(&mut eig.vectors);
    let pca = FittedPca::from_eigh(mean.clone(), eig.clone(), d);
    let ratio = pca.explained_variance_ratio();
    let cum: Vec<f64> = ratio
        .iter()
        .scan(0.0, |acc, r| {
            *acc += r;
            Some(*acc)
        })
        .collect();
    let needed = |frac: f64| cum.iter().position(|&c| c >= frac).map_or(d, |i| i + 1);

    r.fact("n_train", n_train as f64, Format::Int);
    r.fact("n_test", x_test.nrows() as f64, Format::Int);
    r.fact("kept_1", cum[0], Format::Percent(1));
    r.fact("kept_2", cum[1], Format::Percent(1));
    r.fact("kept_10", cum[9], Format::Percent(1));
    r.fact("kept_50", cum[49], Format::Percent(1));
    r.fact("k_90", needed(0.90) as f64, Format::Int);
    r.fact("k_95", needed(0.95) as f64, Format::Int);
    r.fact("k_99", needed(0.99) as f64, Format::Int);
    let n_zero = pca.spectrum().iter().filter(|&&l| l == 0.0).count();
    let n_constant = cov.diag().iter().filter(|&&v| v == 0.0).count();
    r.fact("n_constant_pixels", n_constant as f64, Format::Int);
    r.fact("n_zero_eigenvalues", n_zero as f64, Format::Int);
    r.fact("jacobi_sweeps", sweeps as f64, Format::Int);

    // Variance and reconstruction error by k, on the training and the test images.
    let k_max = *cfg.table_ks.iter().max().unwrap_or(&1);
    let mse_train = mse_by_k(&pca, &x, k_max);
    let mse_test = mse_by_k(&pca, &x_test, k_max);
    r.tables.push(Table {
        name: "variance_table".into(),
        caption: format!(
            "Variance kept and mean squared reconstruction error per pixel (pixels in \
             [0, 1]) with k components, fitted on the {n_train} training images and \
             measured on them and on the {} test images.",
            x_test.nrows()
        ),
        columns: vec![
            col("k", Format::Int),
            col("variance kept", Format::Percent(1)),
            col("train MSE", Format::Sci(2)),
            col("test MSE", Format::Sci(2)),
        ],
        rows: cfg
            .table_ks
            .iter()
            .map(|&k| {
                vec![
                    (k as f64).into(),
                    cum[k - 1].into(),
                    mse_train[k - 1].into(),
                    mse_test[k - 1].into(),
                ]
            })
            .collect(),
    });
    let mse_zero = {
        let c = &x - &mean.view().insert_axis(Axis(0));
        c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64
    };
    r.fact("train_mse_0", mse_zero, Format::Sci(2));
    r.fact("train_mse_50", mse_train[49], Format::Sci(2));
    r.fact("test_mse_50", mse_test[49], Format::Sci(2));

    // Figure: cumulative explained variance.
    r.figures.push(Figure {
        name: "variance".into(),
        title: "Cumulative explained variance of MNIST".into(),
        plot: Plot::Lines {
            x_label: "number of components k".into(),
            y_label: "fraction of variance kept".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: vec![Series {
                name: "PCA (Jacobi)".into(),
                x: (1..=d).map(|k| k as f64).collect(),
                y: cum.clone(),
                band: None,
            }],
        },
    });

    // Figure: a seeded subsample of the training digits on the first two components.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut picked =
        rand::seq::index::sample(&mut rng, n_train, cfg.n_scatter.min(n_train))
            .into_vec();
    picked.sort_unstable();
    let z2 = pca.truncated(2).transform(&x.select(Axis(0), &picked));
    let groups = (0..10u8)
        .map(|digit| {
            let rows: Vec<usize> = (0..picked.len())
                .filter(|&i| train.labels()[picked[i]] == usize::from(digit))
                .collect();
            Group {
                name: digit.to_string(),
                x: rows.iter().map(|&i| z2[[i, 0]]).collect(),
                y: rows.iter().map(|&i| z2[[i, 1]]).collect(),
            }
        })
        .collect();
    r.figures.push(Figure {
        name: "scatter".into(),
        title: format!(
            "{} training digits on the first two principal components",
            picked.len()
        ),
        plot: Plot::Scatter {
            x_label: "PC 1".into(),
            y_label: "PC 2".into(),
            groups,
        },
    });

    // Figure: test digits rebuilt from k components.
    let rows: Vec<usize> = cfg
        .recon_digits
        .iter()
        .filter_map(|&digit| test.labels().iter().position(|&l| l == usize::from(digit)))
        .collect();
    let originals = x_test.select(Axis(0), &rows);
    let recon: Vec<Array2<f64>> = cfg
        .recon_ks
        .iter()
        .map(|&k| {
            let p = pca.truncated(k);
            p.inverse_transform(&p.transform(&originals))
        })
        .collect();
    let mut images = vec![];
    for (i, &row) in rows.iter().enumerate() {
        images.push(to_pixels(x_test.row(row)));
        for rec in &recon {
            images.push(to_pixels(rec.row(i)));
        }
    }
    r.figures.push(Figure {
        name: "reconstructions".into(),
        title: "Test digits rebuilt from k principal components".into(),
        plot: Plot::Images {
            width: test.example_shape()[2],
            height: test.example_shape()[1],
            row_labels: rows.iter().map(|&i| format!("#{i}")).collect(),
            col_labels: std::iter::once("original".to_string())
                .chain(cfg.recon_ks.iter().map(|k| format!("k = {k}")))
                .collect(),
            images,
        },
    });

    // Ablation 1: no centring. X^T X / (n-1) = C + n/(n-1) mu mu^T, computed from C
    // (adding, so no cancellation) instead of a second pass over the data.
    let nf = n_train as f64;
    let outer = mean
        .view()
        .insert_axis(Axis(1))
        .dot(&mean.view().insert_axis(Axis(0)));
    let second_moment = &cov + &(outer * (nf / (nf - 1.0)));
    let mut eig_u = match cfg.ablation_solver {
        Solver::Jacobi => eigh_jacobi(&second_moment),
        Solver::Lapack => lapack::eigh(&second_moment),
    };
    normalize_signs(&mut eig_u.vectors);
    let uncentred = FittedPca::from_eigh(Array1::zeros(d), eig_u, d);
    let ka = *cfg.ablation_ks.iter().max().unwrap_or(&1);
    let mse_u = mse_by_k(&uncentred, &x, ka + 1);
    let mean_dir = &mean / mean.dot(&mean).sqrt();
    let cos_mean = uncentred.components().row(0).dot(&mean_dir).abs();
    r.fact("uncentred_pc1_cos_mean", cos_mean, Format::Fixed(3));
    r.tables.push(Table {
        name: "centring_ablation".into(),
        caption: format!(
            "Training MSE per pixel with k components, with and without centring \
             (without: the directions are eigenvectors of the second moment matrix, \
             here found by {}, and the reconstruction has no mean). Eckart–Young and \
             the extra dimension the mean needs give centred(k) ≤ uncentred(k) and \
             uncentred(k+1) ≤ centred(k).",
            match cfg.ablation_solver {
                Solver::Jacobi => "Jacobi",
                Solver::Lapack => "LAPACK",
            }
        ),
        columns: vec![
            col("k", Format::Int),
            col("centred", Format::Sci(3)),
            col("uncentred", Format::Sci(3)),
            col("uncentred, k + 1", Format::Sci(3)),
        ],
        rows: cfg
            .ablation_ks
            .iter()
            .map(|&k| {
                vec![
                    (k as f64).into(),
                    mse_train[k - 1].into(),
                    mse_u[k - 1].into(),
                    mse_u[k].into(),
                ]
            })
            .collect(),
    });

    // Ablation 2: three solvers on the same covariance, compared on the top eigenpairs.
    let lap = lapack::eigh(&cov);
    let power = top_k_power(
        &cov,
        cfg.power_k,
        &PowerOptions {
            seed: cfg.seed,
            max_iters: 100_000,
            tol: cfg.power_tol,
        },
    );
    let kp = cfg.power_k;
    let rel_diff = |vals: &Array1<f64>| {
        (0..kp)
            .map(|i| ((vals[i] - lap.values[i]) / lap.values[i]).abs())
            .fold(0.0_f64, f64::max)
    };
    let top = |v: &Array2<f64>| v.slice(s![.., ..kp]).to_owned();
    let jac_rel = rel_diff(&eig.values);
    let pow_rel = rel_diff(&power.eigh.values);
    let jac_sub = subspace_distance(top(&eig.vectors).view(), top(&lap.vectors).view());
    let pow_sub = subspace_distance(power.eigh.vectors.view(), top(&lap.vectors).view());
    let pow_iters: usize = power.iters.iter().sum();
    let all_rel = (0..d)
        .map(|i| (eig.values[i] - lap.values[i]).abs() / lap.values[0])
        .fold(0.0_f64, f64::max);
    r.fact("jacobi_vs_lapack_top_rel", jac_rel, Format::Sci(1));
    r.fact("jacobi_vs_lapack_all_abs", all_rel, Format::Sci(1));
    r.fact("power_vs_lapack_top_rel", pow_rel, Format::Sci(1));
    r.fact("power_iters", pow_iters as f64, Format::Int);
    r.fact(
        "power_converged",
        power.converged.iter().filter(|&&c| c).count() as f64,
        Format::Int,
    );
    let gap = (0..kp)
        .map(|i| lap.values[i + 1] / lap.values[i])
        .fold(0.0_f64, f64::max);
    r.fact("power_worst_ratio", gap, Format::Fixed(3));
    r.tables.push(Table {
        name: "solver_ablation".into(),
        caption: format!(
            "Three eigensolvers on the same 784 x 784 covariance, compared with LAPACK on \
             the top {kp} eigenpairs: largest relative eigenvalue difference, and the sine \
             of the largest angle between the spanned {kp}-dimensional subspaces. Work: \
             Jacobi sweeps over all pairs, or matrix-vector products."
        ),
        columns: vec![
            col("solver", Format::Int),
            col("eigenpairs", Format::Int),
            col("work", Format::Int),
            col("max rel. diff. of λ", Format::Sci(1)),
            col("subspace sin θ", Format::Sci(1)),
        ],
        rows: vec![
            vec![
                "Jacobi (from scratch)".into(),
                (d as f64).into(),
                format!("{sweeps} sweeps").into(),
                jac_rel.into(),
                jac_sub.into(),
            ],
            vec![
                "power iteration + deflation".into(),
                (kp as f64).into(),
                format!("{pow_iters} mat-vecs").into(),
                pow_rel.into(),
                pow_sub.into(),
            ],
            vec![
                "LAPACK (ndarray-linalg)".into(),
                (d as f64).into(),
                "–".into(),
                "reference".into(),
                "reference".into(),
            ],
        ],
    });
    Ok(())
}
