//! Chapter 1.1, linear algebra: the usage listings the chapter shows, and one test per
//! claim. The from-scratch decompositions are checked against LAPACK
//! (`dlbook::linalg::lapack`) on random, ill-conditioned, repeated-eigenvalue and
//! rectangular matrices, and the MNIST experiment is re-run and its claims checked.

use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::pca_mnist;
use dlbook::experiments::{Experiment as _, Preset as _};
use dlbook::linalg::{
    eigh_jacobi, eigh_jacobi_with, jacobi_rotation, lapack, max_rel_diff,
    normalize_signs, normalize_svd_signs, orthogonality_error, subspace_distance,
    svd_jacobi, top_k_power, Eigh, JacobiOptions, Pca, PowerOptions, Solver,
};
use dlbook::report::{Plot, Report};
use ndarray::{array, s, Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

// ---------------------------------------------------------------------------------------
// Test matrices

/// An `m x n` matrix of independent standard normal entries.
fn gaussian(m: usize, n: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((m, n), |_| StandardNormal.sample(&mut rng))
}

/// A random symmetric matrix $(G + G^\top)/2$.
fn random_symmetric(n: usize, seed: u64) -> Array2<f64> {
    let g = gaussian(n, n, seed);
    (&g + &g.t()) * 0.5
}

/// A random orthogonal matrix: Gram-Schmidt (twice) on a Gaussian matrix.
fn random_orthogonal(n: usize, seed: u64) -> Array2<f64> {
    let mut q = gaussian(n, n, seed);
    for j in 0..n {
        for _ in 0..2 {
            for i in 0..j {
                let proj = q.column(i).dot(&q.column(j));
                let qi = q.column(i).to_owned();
                q.column_mut(j).scaled_add(-proj, &qi);
            }
        }
        let norm = q.column(j).dot(&q.column(j)).sqrt();
        q.column_mut(j).mapv_inplace(|x| x / norm);
    }
    q
}

/// $Q\,\mathrm{diag}(\lambda)\,Q^\top$ for a random orthogonal $Q$: a symmetric matrix
/// with a chosen spectrum.
fn with_spectrum(values: &[f64], seed: u64) -> Array2<f64> {
    let q = random_orthogonal(values.len(), seed);
    let d = Array1::from(values.to_vec());
    let a = (&q * &d.view().insert_axis(Axis(0))).dot(&q.t());
    // Exactly symmetric, so both solvers see the same matrix.
    (&a + &a.t()) * 0.5
}

/// Largest |difference| of two spectra, relative to the largest |eigenvalue|.
fn spectrum_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let scale = b.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Largest relative difference per eigenvalue, $\max_i |\lambda_i - \mu_i| / |\mu_i|$.
fn per_value_rel_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs() / y.abs()))
}

fn frobenius(a: &Array2<f64>) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// $\lVert V\Lambda V^\top - A\rVert_F / \lVert A \rVert_F$.
fn reconstruction_error(e: &Eigh, a: &Array2<f64>) -> f64 {
    frobenius(&(e.reconstruct() - a)) / frobenius(a)
}

// ---------------------------------------------------------------------------------------
// Usage listings (included by the chapter)

// ANCHOR: jacobi_usage
/// The eigenpairs of a small symmetric matrix, and how well they rebuild it.
pub fn jacobi_usage() -> (Array1<f64>, f64, f64) {
    let a = array![
        [4.0, 1.0, 2.0, 0.5],
        [1.0, 3.0, 0.0, 1.0],
        [2.0, 0.0, 5.0, 1.5],
        [0.5, 1.0, 1.5, 2.0],
    ];
    let eig = eigh_jacobi(&a);
    // A = V diag(lambda) V^T, and V^T V = I.
    let rebuild = reconstruction_error(&eig, &a);
    let orth = orthogonality_error(eig.vectors.view());
    (eig.values, rebuild, orth)
}
// ANCHOR_END: jacobi_usage

// ANCHOR: svd_usage
/// The thin SVD of a wide 3 x 5 matrix, from scratch and from LAPACK.
pub fn svd_usage() -> (Array1<f64>, Array1<f64>, f64) {
    let a = array![
        [1.0, 2.0, 0.0, -1.0, 3.0],
        [0.0, 1.0, 4.0, 2.0, -2.0],
        [2.0, -1.0, 1.0, 0.0, 1.0],
    ];
    let scratch = svd_jacobi(&a); // u: 3x3, s: 3, vt: 3x5
    let library = lapack::svd(&a);
    let rebuild = max_rel_diff(scratch.reconstruct().view(), a.view());
    (scratch.s, library.s, rebuild)
}
// ANCHOR_END: svd_usage

// ANCHOR: pca_usage
/// PCA of 2,000 points that mostly vary along one direction of the plane: the first
/// component finds it and keeps almost all of the variance.
pub fn pca_usage() -> (Array1<f64>, Array1<f64>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dir = array![0.6, 0.8];
    // x = 10·(1, -0.5) + t·dir + noise, t ~ N(0, 3²), noise ~ N(0, 0.3²) per coordinate
    let t = Array2::from_shape_fn((2000, 1), |_| {
        let z: f64 = StandardNormal.sample(&mut rng);
        3.0 * z
    });
    let x = t.dot(&dir.view().insert_axis(Axis(0))) // (2000, 1) x (1, 2)
        + gaussian(2000, 2, 8) * 0.3
        + array![[10.0, -5.0]];
    let pca = Pca::default().fit(&x, 1).expect("2000 finite points");
    let z = pca.transform(&x); // (2000, 1)
    let back = pca.inverse_transform(&z); // (2000, 2): the best rank-1 fit
    let mse = (&x - &back).mapv(|v| v * v).mean().unwrap_or(f64::NAN);
    (
        pca.components().row(0).to_owned(),
        pca.explained_variance_ratio(),
        mse,
    )
}
// ANCHOR_END: pca_usage

// ANCHOR: power_rate_usage
/// Power iteration on a matrix with $\lambda_2/\lambda_1 = 0.8$: the error of the vector
/// after `t` and after `t + 10` iterations, and the ratio theory predicts, $0.8^{10}$.
pub fn power_rate_usage() -> (f64, f64) {
    let a = with_spectrum(&[1.0, 0.8, 0.5, 0.3, 0.1, 0.05], 3);
    let truth = lapack::eigh(&a).vectors.column(0).to_owned();
    let error_after = |t: usize| {
        let opts = PowerOptions {
            seed: 11,
            max_iters: t,
            tol: 0.0, // run exactly t iterations
        };
        let v = top_k_power(&a, 1, &opts).eigh.vectors.column(0).to_owned();
        // sin of the angle between v and the true v1
        (1.0 - v.dot(&truth).powi(2)).max(0.0).sqrt()
    };
    (error_after(40) / error_after(30), 0.8_f64.powi(10))
}
// ANCHOR_END: power_rate_usage

// ---------------------------------------------------------------------------------------
// The from-scratch pieces

#[test]
fn jacobi_rotation_zeroes_the_pair() {
    for (app, aqq, apq) in [
        (1.0, 2.0, 0.5),
        (3.0, 3.0, 1.0),
        (1e20, -1.0, 1e-3),
        (0.0, 0.0, -2.0),
    ] {
        let (c, s) = jacobi_rotation(app, aqq, apq);
        assert!((c * c + s * s - 1.0).abs() < 1e-15);
        // The rotated off-diagonal entry (c^2 - s^2) a_pq + cs (a_pp - a_qq).
        let off = (c * c - s * s) * apq + c * s * (app - aqq);
        let scale = app.abs().max(aqq.abs()).max(apq.abs());
        assert!(
            off.abs() <= 4.0 * f64::EPSILON * scale,
            "{app} {aqq} {apq}: {off}"
        );
        // The smaller root: |phi| <= pi/4.
        assert!(s.abs() <= c + 1e-15);
    }
}

#[test]
fn jacobi_usage_rebuilds_its_matrix() {
    let (values, rebuild, orth) = jacobi_usage();
    assert!(values.windows(2).into_iter().all(|w| w[0] >= w[1]));
    assert!(rebuild < 1e-14, "rebuild error {rebuild:e}");
    assert!(orth < 1e-14, "orthogonality error {orth:e}");
}

#[test]
fn jacobi_reconstructs_and_is_orthogonal() {
    for (n, seed) in [(10, 1), (50, 2), (120, 3)] {
        let a = random_symmetric(n, seed);
        let eig = eigh_jacobi(&a);
        let rebuild = reconstruction_error(&eig, &a);
        let orth = orthogonality_error(eig.vectors.view());
        eprintln!("n = {n}: rebuild {rebuild:.1e}, orthogonality {orth:.1e}");
        assert!(
            rebuild < 1e-13 && orth < 1e-13,
            "n = {n}: {rebuild:e} {orth:e}"
        );
    }
}

#[test]
fn jacobi_converges_in_few_sweeps() {
    for (n, seed) in [(20, 4), (100, 5), (200, 6)] {
        let (_, sweeps) =
            eigh_jacobi_with(&random_symmetric(n, seed), &JacobiOptions::default());
        let sweeps = sweeps.expect("converges");
        eprintln!("n = {n}: {sweeps} sweeps");
        assert!(sweeps <= 12, "n = {n}: {sweeps} sweeps");
    }
}

#[test]
#[should_panic(expected = "shape (3, 4)")]
fn eigh_jacobi_rejects_a_non_square_matrix() {
    eigh_jacobi(&Array2::zeros((3, 4)));
}

#[test]
#[should_panic(expected = "needs a symmetric matrix")]
fn eigh_jacobi_rejects_a_non_symmetric_matrix() {
    eigh_jacobi(&array![[1.0, 2.0], [0.0, 1.0]]);
}

#[test]
fn power_iteration_matches_lapack_on_top_k() {
    let a = with_spectrum(&[10.0, 7.0, 5.0, 4.0, 2.0, 1.0, 0.5, 0.1], 9);
    let top = top_k_power(&a, 4, &PowerOptions::default());
    let lap = lapack::eigh(&a);
    assert!(top.converged.iter().all(|&c| c));
    let rel = per_value_rel_diff(&top.eigh.values, &lap.values.slice(s![..4]).to_owned());
    let sub = subspace_distance(top.eigh.vectors.view(), lap.vectors.slice(s![.., ..4]));
    eprintln!(
        "power: values {rel:.1e}, subspace {sub:.1e}, iters {:?}",
        top.iters
    );
    assert!(rel < 1e-12 && sub < 1e-10, "{rel:e} {sub:e}");
}

#[test]
fn power_iteration_converges_at_rate_lambda2_over_lambda1() {
    let (measured, predicted) = power_rate_usage();
    eprintln!("power rate: measured {measured:.4e}, predicted {predicted:.4e}");
    assert!(
        (measured / predicted - 1.0).abs() < 0.05,
        "{measured} vs {predicted}"
    );
}

// ---------------------------------------------------------------------------------------
// Scratch vs framework

// ANCHOR: agreement_test
/// The from-scratch Jacobi and LAPACK agree on random symmetric matrices: eigenvalues to
/// 1e-13 of the largest, eigenvectors (signs normalised) to 1e-10.
#[test]
fn jacobi_matches_lapack_on_random_symmetric() {
    for (n, seed) in [(5, 10), (40, 11), (150, 12)] {
        let a = random_symmetric(n, seed);
        let (mut ours, mut theirs) = (eigh_jacobi(&a), lapack::eigh(&a));
        normalize_signs(&mut ours.vectors);
        normalize_signs(&mut theirs.vectors);
        let values = spectrum_diff(&ours.values, &theirs.values);
        let vectors = max_rel_diff(ours.vectors.view(), theirs.vectors.view());
        eprintln!("n = {n}: values {values:.1e}, vectors {vectors:.1e}");
        assert!(values < 1e-13, "n = {n}: eigenvalues differ by {values:e}");
        assert!(
            vectors < 1e-10,
            "n = {n}: eigenvectors differ by {vectors:e}"
        );
    }
}
// ANCHOR_END: agreement_test

#[test]
fn jacobi_matches_lapack_on_ill_conditioned() {
    // Eigenvalues 1 ... 1e-10, log-spaced: condition number 1e10.
    let n = 40;
    let values: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(-10.0 * i as f64 / (n - 1) as f64))
        .collect();
    let a = with_spectrum(&values, 13);
    let (ours, theirs) = (eigh_jacobi(&a), lapack::eigh(&a));
    let truth = Array1::from(values.clone());
    let normwise = spectrum_diff(&ours.values, &theirs.values);
    let big = per_value_rel_diff(
        &ours.values.slice(s![..20]).to_owned(),
        &theirs.values.slice(s![..20]).to_owned(),
    );
    let all = per_value_rel_diff(&ours.values, &theirs.values);
    let ours_vs_truth = per_value_rel_diff(&ours.values, &truth);
    let theirs_vs_truth = per_value_rel_diff(&theirs.values, &truth);
    let rebuild = reconstruction_error(&ours, &a);
    eprintln!(
        "ill-conditioned: normwise {normwise:.1e}, relative (top 20, >= 1e-5) {big:.1e}, \
         relative (all) {all:.1e}; vs constructed: ours {ours_vs_truth:.1e}, \
         lapack {theirs_vs_truth:.1e}; rebuild {rebuild:.1e}"
    );
    assert!(normwise < 1e-14, "{normwise:e}");
    assert!(big < 1e-10, "{big:e}");
    assert!(rebuild < 1e-14, "{rebuild:e}");
    // The smallest eigenvalues agree only to about 1e-6 relative, and neither solver is
    // closer than that to the values the matrix was built from: rounding A itself moves
    // them by about eps * |A| = 1e-16, which is 1e-6 of 1e-10.
    assert!(all > 1e-10 && all < 1e-5, "{all:e}");
    assert!(ours_vs_truth < 1e-5 && theirs_vs_truth < 1e-5);
}

#[test]
fn jacobi_matches_lapack_on_repeated_eigenvalues() {
    // Three clusters of exactly repeated eigenvalues: only the spans are defined.
    let values = [5.0, 5.0, 5.0, 2.0, 2.0, -1.0, -1.0, -1.0, -1.0, 0.5];
    let a = with_spectrum(&values, 14);
    let (ours, theirs) = (eigh_jacobi(&a), lapack::eigh(&a));
    let diff = spectrum_diff(&ours.values, &theirs.values);
    let mut worst_span = 0.0_f64;
    // Sorted descending: 5 5 5 | 2 2 | 0.5 | -1 -1 -1 -1.
    for (lo, hi) in [(0, 3), (3, 5), (5, 6), (6, 10)] {
        let d = subspace_distance(
            ours.vectors.slice(s![.., lo..hi]),
            theirs.vectors.slice(s![.., lo..hi]),
        );
        worst_span = worst_span.max(d);
    }
    let rebuild = reconstruction_error(&ours, &a);
    let orth = orthogonality_error(ours.vectors.view());
    eprintln!(
        "repeated: values {diff:.1e}, spans {worst_span:.1e}, rebuild {rebuild:.1e}"
    );
    assert!(diff < 1e-14 && worst_span < 1e-12 && rebuild < 1e-14 && orth < 1e-14);
}

#[test]
fn svd_matches_lapack_on_tall_and_wide() {
    for (m, n, seed) in [
        (50, 20, 20),
        (20, 50, 21),
        (300, 40, 22),
        (7, 7, 23),
        (1, 5, 24),
    ] {
        let a = gaussian(m, n, seed);
        let (mut ours, mut theirs) = (svd_jacobi(&a), lapack::svd(&a));
        let r = m.min(n);
        assert_eq!(ours.u.dim(), (m, r));
        assert_eq!(ours.vt.dim(), (r, n));
        normalize_svd_signs(&mut ours);
        normalize_svd_signs(&mut theirs);
        let values = per_value_rel_diff(&ours.s, &theirs.s);
        let u = max_rel_diff(ours.u.view(), theirs.u.view());
        let vt = max_rel_diff(ours.vt.view(), theirs.vt.view());
        let rebuild = max_rel_diff(ours.reconstruct().view(), a.view());
        let orth =
            orthogonality_error(ours.u.view()).max(orthogonality_error(ours.vt.t()));
        eprintln!(
            "svd {m}x{n}: values {values:.1e}, u {u:.1e}, vt {vt:.1e}, rebuild \
             {rebuild:.1e}, orth {orth:.1e}"
        );
        assert!(values < 1e-12, "{m}x{n}: {values:e}");
        assert!(u < 1e-10 && vt < 1e-10, "{m}x{n}: {u:e} {vt:e}");
        assert!(
            rebuild < 1e-13 && orth < 1e-13,
            "{m}x{n}: {rebuild:e} {orth:e}"
        );
    }
}

#[test]
fn svd_usage_agrees_with_lapack() {
    let (ours, theirs, rebuild) = svd_usage();
    assert!(per_value_rel_diff(&ours, &theirs) < 1e-13);
    assert!(rebuild < 1e-14);
}

#[test]
fn singular_values_are_square_roots_of_eigenvalues_of_ata() {
    let a = gaussian(60, 12, 25);
    let s = svd_jacobi(&a).s;
    let lambda = eigh_jacobi(&a.t().dot(&a)).values;
    let rel = per_value_rel_diff(&s.mapv(|x| x * x), &lambda);
    assert!(rel < 1e-12, "{rel:e}");
}

#[test]
fn svd_of_a_rank_deficient_matrix() {
    // Rank 3, shape 12 x 8: five singular values are zero to rounding, and U is still
    // completed to orthonormal columns.
    let a = gaussian(12, 3, 26).dot(&gaussian(3, 8, 27));
    let svd = svd_jacobi(&a);
    assert!(svd.s[2] > 1e-3 * svd.s[0]);
    assert!(
        svd.s.slice(s![3..]).iter().all(|&x| x < 1e-14 * svd.s[0]),
        "{}",
        svd.s
    );
    assert!(orthogonality_error(svd.u.view()) < 1e-13);
    assert!(orthogonality_error(svd.vt.t()) < 1e-13);
    assert!(max_rel_diff(svd.reconstruct().view(), a.view()) < 1e-14);
}

// ---------------------------------------------------------------------------------------
// PCA

#[test]
fn pca_finds_the_direction_of_largest_variance() {
    let (component, ratio, mse) = pca_usage();
    eprintln!("pca usage: component {component}, ratio {ratio}, mse {mse:.3}");
    // The data vary along (0.6, 0.8) with std 3 and have isotropic noise of std 0.3.
    assert!((component[0] - 0.6).abs() < 0.01 && (component[1] - 0.8).abs() < 0.01);
    assert!(ratio[0] > 0.98, "{ratio}");
    // What is left is the noise across the line: variance 0.09, spread on 2 pixels.
    assert!((mse - 0.045).abs() < 0.005, "{mse}");
}

#[test]
fn pca_reconstruction_error_is_the_discarded_variance() {
    let x = gaussian(500, 12, 30).dot(&gaussian(12, 12, 31));
    let n = x.nrows();
    let pca = Pca::default().fit(&x, 12).unwrap();
    for k in [1, 4, 11] {
        let p = pca.truncated(k);
        let back = p.inverse_transform(&p.transform(&x));
        let sq: f64 = (&x - &back).mapv(|v| v * v).sum();
        let discarded: f64 = pca.spectrum().slice(s![k..]).sum();
        let want = (n - 1) as f64 * discarded;
        assert!((sq / want - 1.0).abs() < 1e-10, "k = {k}: {sq} vs {want}");
    }
}

#[test]
fn pca_jacobi_and_lapack_solvers_agree() {
    let x = gaussian(300, 30, 32).dot(&gaussian(30, 30, 33));
    let ours = Pca::default().fit(&x, 5).unwrap();
    let theirs = Pca {
        solver: Solver::Lapack,
        ..Pca::default()
    }
    .fit(&x, 5)
    .unwrap();
    let values =
        per_value_rel_diff(&ours.explained_variance(), &theirs.explained_variance());
    let comps = max_rel_diff(ours.components().view(), theirs.components().view());
    assert!(values < 1e-12 && comps < 1e-10, "{values:e} {comps:e}");
}

#[test]
fn pca_fit_rejects_bad_data() {
    let pca = Pca::default();
    assert!(pca.fit(&Array2::zeros((1, 3)), 1).is_err());
    assert!(pca.fit(&Array2::zeros((5, 3)), 0).is_err());
    assert!(pca.fit(&Array2::zeros((5, 3)), 4).is_err());
    let mut x = Array2::zeros((5, 3));
    x[[2, 1]] = f64::NAN;
    let err = pca.fit(&x, 1).unwrap_err().to_string();
    assert!(err.contains("x[2, 1]"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The MNIST experiment

/// The quick experiment, run once for all the tests below.
fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        let cfg = pca_mnist::Config::quick();
        pca_mnist::PcaMnist::report(&cfg, &DataDir::resolve(None))
            .expect("pca_mnist runs (is the data directory set up? see `dlbook data`)")
            .rounded()
    })
}

fn fact(name: &str) -> f64 {
    report()
        .get_fact(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
}

/// Column `j` of table `name`, as numbers.
fn column(name: &str, j: usize) -> Vec<f64> {
    let t = report()
        .table(name)
        .unwrap_or_else(|| panic!("no table {name}"));
    t.rows
        .iter()
        .map(|r| r[j].number().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn pca_mnist_uses_all_training_images() {
    assert_eq!(fact("n_train"), 60_000.0);
    assert_eq!(fact("n_test"), 10_000.0);
}

#[test]
fn ten_components_keep_about_half_the_variance() {
    let kept = fact("kept_10");
    assert!((0.45..0.52).contains(&kept), "{kept}");
}

#[test]
fn fifty_components_keep_over_80_percent() {
    let kept = fact("kept_50");
    assert!((0.80..0.85).contains(&kept), "{kept}");
}

#[test]
fn about_a_hundred_components_for_90_percent() {
    let (k90, k95, k99) = (fact("k_90"), fact("k_95"), fact("k_99"));
    assert!((80.0..=100.0).contains(&k90), "{k90}");
    assert!((140.0..=170.0).contains(&k95), "{k95}");
    assert!((300.0..=350.0).contains(&k99), "{k99}");
}

#[test]
fn first_component_keeps_about_a_tenth() {
    let k1 = fact("kept_1");
    assert!((0.09..0.11).contains(&k1), "{k1}");
}

#[test]
fn constant_pixels_give_zero_eigenvalues() {
    // At least one zero eigenvalue per pixel that never changes.
    assert!(fact("n_zero_eigenvalues") >= fact("n_constant_pixels"));
    assert!(fact("n_constant_pixels") > 50.0);
}

#[test]
fn train_mse_is_the_discarded_variance() {
    // MSE(k) = MSE(0) * (1 - kept(k)): the Pythagoras identity, to the rounding of the
    // report (6 significant digits).
    let mse0 = fact("train_mse_0");
    for (kept, mse) in column("variance_table", 1)
        .iter()
        .zip(column("variance_table", 2))
    {
        let want = mse0 * (1.0 - kept);
        assert!((mse / want - 1.0).abs() < 1e-4, "{mse} vs {want}");
    }
}

#[test]
fn test_error_is_within_five_percent_of_train_error() {
    let (train, test) = (column("variance_table", 2), column("variance_table", 3));
    for (a, b) in train.iter().zip(&test) {
        assert!((b / a - 1.0).abs() < 0.05, "train {a} test {b}");
    }
}

#[test]
fn uncentred_pca_costs_at_most_one_component() {
    let centred = column("centring_ablation", 1);
    let uncentred = column("centring_ablation", 2);
    let uncentred_plus = column("centring_ablation", 3);
    for i in 0..centred.len() {
        assert!(centred[i] <= uncentred[i] * (1.0 + 1e-6));
        assert!(uncentred_plus[i] <= centred[i] * (1.0 + 1e-6));
    }
    // And the first uncentred direction is the mean image, to a cosine above 0.99.
    assert!(fact("uncentred_pc1_cos_mean") > 0.99);
}

#[test]
fn scratch_jacobi_agrees_with_lapack_on_mnist() {
    assert!(fact("jacobi_vs_lapack_top_rel") < 1e-10);
    assert!(fact("jacobi_vs_lapack_all_abs") < 1e-12);
    let sub = column("solver_ablation", 4);
    assert!(sub[0] < 1e-10, "Jacobi subspace {}", sub[0]);
    assert!(fact("jacobi_sweeps") <= 15.0);
}

#[test]
fn power_iteration_agrees_with_lapack_on_mnist() {
    assert_eq!(fact("power_converged"), 10.0);
    assert!(fact("power_vs_lapack_top_rel") < 1e-10);
    let sub = column("solver_ablation", 4);
    assert!(sub[1] < 1e-8, "power subspace {}", sub[1]);
    // Gaps are small (ratios up to 0.96), so it needs thousands of mat-vecs.
    assert!(fact("power_worst_ratio") > 0.9 && fact("power_iters") > 1000.0);
}

#[test]
fn zeros_and_ones_lie_apart_on_the_first_two_components() {
    let fig = report()
        .figures
        .iter()
        .find(|f| f.name == "scatter")
        .expect("scatter");
    let Plot::Scatter { groups, .. } = &fig.plot else {
        panic!("not a scatter plot")
    };
    let centroid = |d: usize| {
        let g = &groups[d];
        let n = g.x.len() as f64;
        (g.x.iter().sum::<f64>() / n, g.y.iter().sum::<f64>() / n)
    };
    let dist = |a: usize, b: usize| {
        let ((xa, ya), (xb, yb)) = (centroid(a), centroid(b));
        ((xa - xb).powi(2) + (ya - yb).powi(2)).sqrt()
    };
    // 1 has the smallest mean first coordinate, 0 the largest.
    for d in 2..10 {
        assert!(centroid(1).0 < centroid(d).0 && centroid(d).0 < centroid(0).0);
    }
    // The centroids of 0 and 1 are more than 3 away from every other digit's ...
    for d in 0..10 {
        for special in [0, 1] {
            if d != special {
                assert!(
                    dist(special, d) > 3.0,
                    "{special} vs {d}: {}",
                    dist(special, d)
                );
            }
        }
    }
    // ... while those of 4, 7 and 9 are within 1 of each other.
    assert!(dist(4, 7) < 1.0 && dist(4, 9) < 1.0 && dist(7, 9) < 1.0);
}

#[test]
fn generated_facts_match_a_fresh_run() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("chapters/generated/ch01/pca_mnist.json"),
    )
    .expect("the generated report exists (run `dlbook regen pca_mnist`)");
    let stored = Report::from_json(&text).expect("valid report");
    for name in [
        "kept_1",
        "kept_10",
        "kept_50",
        "k_90",
        "k_95",
        "k_99",
        "train_mse_50",
    ] {
        let (a, b) = (stored.get_fact(name).unwrap(), fact(name));
        assert!((a / b - 1.0).abs() < 1e-4, "{name}: stored {a}, fresh {b}");
    }
    assert_eq!(stored.config, report().config);
}
