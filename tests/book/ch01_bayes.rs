//! Chapter 1.3, Bayesian inference: usage listings and the claims they check.

use std::f64::consts::PI;
use std::sync::OnceLock;

use dlbook::bayes::{self, Beta, BetaPrior, DiagnosticTest, GridPosterior};
use dlbook::data::DataDir;
use dlbook::experiments::{self, Preset as _};
use dlbook::experiments::{beta_binomial, diagnostic_test};
use dlbook::report::{Plot, Report, Table, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ANCHOR: coin_posterior
/// A uniform prior, then 7 heads in 20 tosses: the posterior, its mean and 95 % interval.
fn coin_posterior() -> (Beta, f64, (f64, f64)) {
    let prior = BetaPrior {
        alpha: 1.0,
        beta: 1.0,
    };
    let posterior = prior.posterior(7, 20); // Beta(1 + 7, 1 + 13)
    (
        posterior,
        posterior.mean(),
        posterior.credible_interval(0.95),
    )
}
// ANCHOR_END: coin_posterior

// ANCHOR: grid_check
/// The same posterior computed by brute force on a grid of 100 000 cells.
fn grid_check() -> (f64, f64, (f64, f64)) {
    let prior = Beta::uniform();
    let grid = GridPosterior::new(|t| prior.ln_pdf(t), 7, 20, 100_000);
    (grid.mean(), grid.variance(), grid.credible_interval(0.95))
}
// ANCHOR_END: grid_check

// ANCHOR: diagnostic
/// 1 % prevalence, 99 % sensitivity, 95 % specificity: P(ill | positive).
fn diagnostic() -> f64 {
    let test = DiagnosticTest::new(0.99, 0.95);
    test.p_disease_given_positive(0.01)
}
// ANCHOR_END: diagnostic

const CF_TOL: f64 = 1e-13;
const INV_TOL: f64 = 1e-10;

#[test]
fn ln_gamma_matches_known_values() {
    let sqrt_pi = PI.sqrt();
    assert!((bayes::ln_gamma(0.5) - sqrt_pi.ln()).abs() < 1e-14);
    assert!((bayes::ln_gamma(1.5) - (sqrt_pi / 2.0).ln()).abs() < 1e-14);
    assert!(bayes::ln_gamma(1.0).abs() < 1e-15 && bayes::ln_gamma(2.0).abs() < 1e-15);
    // 170! is near the top of the f64 range; compare ln 170! summed term by term.
    let ln_fact: f64 = (1..=170).map(|k| (k as f64).ln()).sum();
    assert!((bayes::ln_gamma(171.0) - ln_fact).abs() < 1e-12 * ln_fact);
    // The recurrence ln Γ(x + 1) = ln Γ(x) + ln x, across the reflection point too.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..1000 {
        let x: f64 = rng.random_range(0.01..50.0);
        let lhs = bayes::ln_gamma(x + 1.0);
        let rhs = bayes::ln_gamma(x) + x.ln();
        assert!((lhs - rhs).abs() < 1e-13 * lhs.abs().max(1.0), "x = {x}");
    }
}

#[test]
fn incomplete_beta_matches_closed_forms() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..1000 {
        let x: f64 = rng.random_range(0.0..1.0);
        let a: f64 = rng.random_range(0.1..20.0);
        let i = |a, b| bayes::reg_inc_beta(a, b, x);
        assert!((i(a, 1.0) - x.powf(a)).abs() < CF_TOL);
        assert!((i(1.0, a) - (1.0 - (1.0 - x).powf(a))).abs() < CF_TOL);
        assert!((i(2.0, 2.0) - (3.0 * x * x - 2.0 * x * x * x)).abs() < CF_TOL);
        assert!((i(0.5, 0.5) - 2.0 / PI * x.sqrt().asin()).abs() < CF_TOL);
        let b: f64 = rng.random_range(0.1..20.0);
        assert!((i(a, b) - (1.0 - bayes::reg_inc_beta(b, a, 1.0 - x))).abs() < CF_TOL);
    }
    // Integer parameters: I_x(a, b) = P(Binomial(a + b − 1, x) ≥ a).
    for (a, b, x) in [
        (3u64, 5u64, 0.3),
        (30, 70, 0.28),
        (300, 700, 0.31),
        (1, 1, 0.9),
    ] {
        let n = a + b - 1;
        let tail: f64 = (a..=n).map(|j| bayes::binomial_pmf(j, n, x)).sum();
        let got = bayes::reg_inc_beta(a as f64, b as f64, x);
        assert!((got - tail).abs() < 1e-12, "a={a} b={b}: {got} vs {tail}");
    }
}

#[test]
fn inverse_incomplete_beta_to_1e10() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for _ in 0..1000 {
        let p: f64 = rng.random_range(0.0..1.0);
        let a: f64 = rng.random_range(0.1..20.0);
        let inv = |a, b| bayes::inv_reg_inc_beta(a, b, p);
        assert!(
            (inv(a, 1.0) - p.powf(1.0 / a)).abs() < INV_TOL,
            "a = {a}, p = {p}"
        );
        assert!((inv(1.0, a) - (1.0 - (1.0 - p).powf(1.0 / a))).abs() < INV_TOL);
        assert!((inv(0.5, 0.5) - (PI * p / 2.0).sin().powi(2)).abs() < INV_TOL);
    }
    // Round trips over a wide range, including extreme tails and large counts.
    for &a in &[0.5, 1.0, 2.5, 31.0, 1000.5] {
        for &b in &[0.5, 3.0, 70.0, 999.5] {
            for &p in &[1e-8, 0.025, 0.3, 0.5, 0.975, 1.0 - 1e-8] {
                let x = bayes::inv_reg_inc_beta(a, b, p);
                let back = bayes::reg_inc_beta(a, b, x);
                if 1.0 - x < 1e-14 {
                    // The quantile is closer to 1 than f64 can resolve (e.g. 1 − 2.5e-16
                    // for Beta(½, ½)); the mirrored problem Beta(b, a) at 1 − p is fine.
                    let y = bayes::inv_reg_inc_beta(b, a, 1.0 - p);
                    assert!((bayes::reg_inc_beta(b, a, y) - (1.0 - p)).abs() < 1e-18);
                    continue;
                }
                let err = (back - p).abs();
                // 1e-11: near x = 1 one f64 step in x moves the CDF by about 3e-12.
                assert!(err < 1e-11, "a={a} b={b} p={p}: x={x} error {err:e}");
                // Relative to the tail mass too, unless x is so near 1 that the spacing
                // of f64 values around it (1.1e-16) limits the CDF itself.
                if 1.0 - x > 1e-4 {
                    let rel = err / p.min(1.0 - p);
                    assert!(rel < INV_TOL, "a={a} b={b} p={p}: relative error {rel:e}");
                }
            }
        }
    }
}

#[test]
fn posterior_is_beta_with_added_counts() {
    let (posterior, mean, (lo, hi)) = coin_posterior();
    assert_eq!(posterior, Beta::new(8.0, 14.0));
    assert!((mean - 8.0 / 22.0).abs() < 1e-15);
    assert!(lo < mean && mean < hi);
    assert!((posterior.cdf(hi) - posterior.cdf(lo) - 0.95).abs() < 1e-12);
    assert!((posterior.cdf(lo) - 0.025).abs() < 1e-12);
}

#[test]
fn sequential_updating_equals_batch() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let flips: Vec<bool> = (0..200).map(|_| rng.random::<f64>() < 0.3).collect();
    let prior = Beta::jeffreys();
    let one_by_one = flips
        .iter()
        .fold(prior, |b, &heads| b.posterior(heads as u64, 1));
    let k = flips.iter().filter(|&&h| h).count() as u64;
    assert_eq!(one_by_one, prior.posterior(k, 200));
    let reversed = flips
        .iter()
        .rev()
        .fold(prior, |b, &heads| b.posterior(heads as u64, 1));
    assert_eq!(reversed, one_by_one);
}

#[test]
fn posterior_mean_is_weighted_average() {
    for (a, b, k, n) in [
        (1.0, 1.0, 7, 20),
        (30.0, 70.0, 3, 10),
        (0.5, 0.5, 298, 1000),
    ] {
        let prior = Beta::new(a, b);
        let w = (a + b) / (a + b + n as f64);
        let blend = w * prior.mean() + (1.0 - w) * k as f64 / n as f64;
        assert!((prior.posterior(k, n).mean() - blend).abs() < 1e-15);
    }
}

#[test]
fn mode_maximises_the_density() {
    let post = Beta::new(8.0, 14.0);
    let m = post.mode().unwrap();
    assert!(
        (m - 7.0 / 20.0).abs() < 1e-15,
        "the mode is the observed frequency k/n"
    );
    for dx in [1e-3, 1e-2, 0.1] {
        assert!(post.pdf(m) > post.pdf(m + dx) && post.pdf(m) > post.pdf(m - dx));
    }
    assert_eq!(Beta::uniform().mode(), None);
    assert_eq!(Beta::new(0.5, 3.0).mode(), None);
}

#[test]
fn grid_posterior_matches_closed_form() {
    let (posterior, mean, (lo, hi)) = coin_posterior();
    let (g_mean, g_var, (g_lo, g_hi)) = grid_check();
    assert!((g_mean - mean).abs() < 1e-12);
    assert!((g_var - posterior.variance()).abs() < 1e-12);
    assert!((g_lo - lo).abs() < 1e-8 && (g_hi - hi).abs() < 1e-8);
    // A non-conjugate check too: a strong prior and many trials.
    let prior = Beta::new(80.0, 20.0);
    let post = prior.posterior(298, 1000);
    let grid = GridPosterior::new(|t| prior.ln_pdf(t), 298, 1000, 100_000);
    assert!((grid.mean() - post.mean()).abs() < 1e-12);
    let (a, b) = (grid.credible_interval(0.95), post.credible_interval(0.95));
    assert!((a.0 - b.0).abs() < 1e-8 && (a.1 - b.1).abs() < 1e-8);
}

#[test]
fn grid_is_poor_for_singular_densities() {
    // Jeffreys' prior and no successes: the posterior density is infinite at θ = 0, and
    // the midpoint rule misjudges the first cells.
    let prior = Beta::jeffreys();
    let post = prior.posterior(0, 10);
    let grid = GridPosterior::new(|t| prior.ln_pdf(t), 0, 10, 100_000);
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    let lo_err = rel(
        grid.credible_interval(0.95).0,
        post.credible_interval(0.95).0,
    );
    assert!(lo_err > 1e-3, "relative error of the lower end {lo_err}");
    // The regular case is many orders of magnitude better.
    let regular = prior.posterior(3, 10);
    let g = GridPosterior::new(|t| prior.ln_pdf(t), 3, 10, 100_000);
    let reg_err = rel(
        g.credible_interval(0.95).0,
        regular.credible_interval(0.95).0,
    );
    assert!(reg_err < 1e-8 && reg_err * 1e4 < lo_err);
}

#[test]
fn hpd_is_shortest_with_equal_density_ends() {
    for post in [
        Beta::new(8.0, 14.0),
        Beta::new(1.5, 30.0),
        Beta::new(300.0, 700.0),
    ] {
        let (l, u) = post.hpd_interval(0.95);
        let (el, eu) = post.credible_interval(0.95);
        assert!((post.cdf(u) - post.cdf(l) - 0.95).abs() < 1e-10);
        assert!(u - l <= eu - el + 1e-12);
        assert!((post.pdf(l) / post.pdf(u) - 1.0).abs() < 1e-4, "{:?}", post);
    }
    // A density that decreases from 0: the HPD interval starts at 0.
    let (l, _) = Beta::new(1.0, 5.0).hpd_interval(0.95);
    assert!(l < 1e-6);
}

#[test]
fn bayes_rule_normalises() {
    let post = bayes::bayes_rule(&[0.2, 0.5, 0.3], &[0.9, 0.1, 0.4]);
    assert!((post.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    let evidence = 0.2 * 0.9 + 0.5 * 0.1 + 0.3 * 0.4;
    assert!((post[0] - 0.18 / evidence).abs() < 1e-15);
}

#[test]
fn odds_form_agrees_with_bayes_rule() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for _ in 0..1000 {
        let test =
            DiagnosticTest::new(rng.random_range(0.5..1.0), rng.random_range(0.5..0.999));
        let prev: f64 = rng.random_range(1e-4..0.9);
        let direct = test.p_disease_given_positive(prev);
        let via_odds = bayes::prob_from_odds(bayes::odds(prev) * test.lr_positive());
        assert!((direct - via_odds).abs() < 1e-12);
    }
}

#[test]
fn base_rate_effect() {
    let ppv = diagnostic();
    assert!(ppv < 0.2 && ppv > 0.15, "P(ill | +) = {ppv}");
    let test = DiagnosticTest::new(0.99, 0.95);
    let prevalences = [1e-4, 1e-3, 0.01, 0.1, 0.5];
    let ppvs: Vec<f64> = prevalences
        .iter()
        .map(|&p| test.p_disease_given_positive(p))
        .collect();
    assert!(ppvs.windows(2).all(|w| w[1] > w[0]));
}

#[test]
fn binomial_pmf_sums_to_one() {
    for (n, t) in [(0, 0.3), (10, 0.02), (100, 0.5), (1000, 0.999)] {
        let s: f64 = (0..=n).map(|k| bayes::binomial_pmf(k, n, t)).sum();
        assert!((s - 1.0).abs() < 1e-12, "n = {n}: {s}");
    }
}

// ---------------------------------------------------------------------------------------
// The experiments

fn bb() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("beta_binomial", &DataDir::resolve(None))
            .cloned()
            .unwrap()
    })
}

fn dt() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("diagnostic_test", &DataDir::resolve(None))
            .cloned()
            .unwrap()
    })
}

fn table(r: &'static Report, name: &str) -> &'static Table {
    r.table(name).unwrap_or_else(|| panic!("no table {name}"))
}

fn num(v: &Value) -> f64 {
    v.number().expect("a number")
}

#[test]
fn experiment_coverage_is_95_when_theta_from_prior() {
    let cfg = beta_binomial::Config::quick();
    let se = (0.95 * 0.05 / cfg.sims_per_seed as f64).sqrt();
    for row in &table(bb(), "coverage_prior").rows {
        let Value::Seeds(per_seed) = &row[2] else {
            panic!("coverage is per seed")
        };
        assert_eq!(per_seed.len(), cfg.seeds.len());
        for &c in per_seed {
            assert!((c - 0.95).abs() < 4.5 * se, "{:?}: {c}", row[0]);
        }
    }
}

#[test]
fn experiment_simulated_coverage_matches_exact() {
    let cfg = beta_binomial::Config::quick();
    for row in &table(bb(), "coverage_fixed").rows {
        let exact = num(&row[3]);
        let se = (exact * (1.0 - exact) / cfg.sims_per_seed as f64).sqrt();
        let Value::Seeds(per_seed) = &row[4] else {
            panic!("coverage is per seed")
        };
        for &c in per_seed {
            assert!((c - exact).abs() < 4.5 * se.max(1e-4), "{row:?}");
        }
    }
}

#[test]
fn experiment_fixed_theta_coverage_is_not_95() {
    let rows = &table(bb(), "coverage_fixed").rows;
    let exact = |prior: &str, t: f64, n: f64| {
        let r = rows
            .iter()
            .find(|r| {
                matches!(&r[0], Value::Text(s) if s.starts_with(prior))
                    && num(&r[1]) == t
                    && num(&r[2]) == n
            })
            .unwrap();
        num(&r[3])
    };
    assert!(exact("uniform", 0.02, 10.0) < 0.85);
    // Why: one head in ten moves the uniform prior's interval above θ = 0.02.
    assert!(Beta::uniform().posterior(1, 10).credible_interval(0.95).0 > 0.02);
    assert!(exact("Jeffreys", 0.02, 10.0) > 0.95);
    let all: Vec<f64> = rows.iter().map(|r| num(&r[3])).collect();
    assert!(all.iter().any(|&c| c < 0.94) && all.iter().any(|&c| c > 0.96));
}

#[test]
fn experiment_posterior_concentrates() {
    let f = bb().figures.iter().find(|f| f.name == "interval").unwrap();
    let Plot::Lines { series, .. } = &f.plot else {
        panic!("a line chart")
    };
    let (upper, lower) = (&series[0], &series[2]);
    let width: Vec<f64> = upper.y.iter().zip(&lower.y).map(|(u, l)| u - l).collect();
    assert!(width.last().unwrap() * 5.0 < width[0]);
    // With n up to 1000 the width shrinks roughly like 1/√n.
    let n_last = *upper.x.last().unwrap();
    assert!(*width.last().unwrap() < 4.0 * (0.3f64 * 0.7 / n_last).sqrt());
    let theta = bb().get_fact("theta").unwrap();
    let (lo, hi) = (
        bb().get_fact("last_lo").unwrap(),
        bb().get_fact("last_hi").unwrap(),
    );
    assert!(lo < theta && theta < hi);
    // The sequential figure: the posterior gets taller as data arrive.
    let f = bb()
        .figures
        .iter()
        .find(|f| f.name == "sequential")
        .unwrap();
    let Plot::Lines { series, .. } = &f.plot else {
        panic!("a line chart")
    };
    let peaks: Vec<f64> = series
        .iter()
        .map(|s| s.y.iter().copied().fold(0.0, f64::max))
        .collect();
    assert!(peaks.windows(2).all(|w| w[1] > w[0]), "{peaks:?}");
}

#[test]
fn experiment_data_overwhelm_the_prior() {
    let rows = &table(bb(), "prior_sensitivity").rows;
    let mean = |prior: &str, n: f64| {
        let r = rows
            .iter()
            .find(|r| {
                matches!(&r[0], Value::Text(s) if s.starts_with(prior)) && num(&r[2]) == n
            })
            .unwrap();
        num(&r[4])
    };
    let spread = |n: f64| {
        let ms =
            ["uniform", "Jeffreys", "strong, right", "strong, wrong"].map(|p| mean(p, n));
        ms.iter().copied().fold(f64::MIN, f64::max)
            - ms.iter().copied().fold(f64::MAX, f64::min)
    };
    assert!(spread(1000.0) * 5.0 < spread(10.0));
    assert!(
        spread(10.0) > 0.3,
        "a strong prior dominates 10 observations"
    );
    assert!((mean("uniform", 1000.0) - mean("Jeffreys", 1000.0)).abs() < 1e-3);
}

#[test]
fn experiment_prior_weight_formula() {
    let cfg = beta_binomial::Config::quick();
    let rows = &table(bb(), "prior_strength").rows;
    for r in rows {
        let (s, n, k, w, m) =
            (num(&r[0]), num(&r[1]), num(&r[2]), num(&r[3]), num(&r[4]));
        assert!((w - s / (s + n)).abs() < 1e-12);
        assert!((m - (w * cfg.ablation_prior_mean + (1.0 - w) * k / n)).abs() < 1e-12);
    }
    // The strongest misplaced prior misses θ at both sample sizes; the weakest does not.
    let covers = |r: &Vec<Value>| r[7] == Value::from("yes");
    let max_s = cfg.ablation_strengths.iter().copied().fold(0.0, f64::max);
    let min_s = cfg
        .ablation_strengths
        .iter()
        .copied()
        .fold(f64::MAX, f64::min);
    assert!(rows
        .iter()
        .filter(|r| num(&r[0]) == max_s)
        .all(|r| !covers(r)));
    assert!(rows.iter().filter(|r| num(&r[0]) == min_s).all(covers));
}

#[test]
fn experiment_grid_agrees_with_closed_form() {
    assert!(bb().get_fact("grid_max_error").unwrap() < 1e-8);
}

#[test]
fn experiment_one_in_six_positives_is_ill() {
    let r = dt();
    let ppv = r.get_fact("ppv").unwrap();
    assert!(ppv > 1.0 / 6.5 && ppv < 1.0 / 5.5);
    let (tp, fp) = (
        r.get_fact("natural_tp").unwrap(),
        r.get_fact("natural_fp").unwrap(),
    );
    assert!((tp / (tp + fp) - ppv).abs() < 1e-12);
    assert!(fp > 4.0 * tp, "false positives outnumber true ones");
    assert!(r.get_fact("p_disease_given_negative").unwrap() < 2e-4);
    assert!(r.get_fact("ppv_best_specificity").unwrap() > 0.9);
}

#[test]
fn experiment_simulated_population_agrees() {
    let r = dt();
    let cfg = diagnostic_test::Config::quick();
    let ppv = r.get_fact("ppv").unwrap();
    let Value::Seeds(sims) = &r.facts["ppv_simulated"].value else {
        panic!("per seed")
    };
    let positives =
        cfg.population as f64 * DiagnosticTest::new(0.99, 0.95).p_positive(0.01);
    let se = (ppv * (1.0 - ppv) / positives).sqrt();
    for &s in sims {
        assert!((s - ppv).abs() < 4.5 * se, "{s} vs {ppv}");
    }
}

#[test]
fn experiment_repeat_tests() {
    let r = dt();
    let rows = &table(r, "repeat_tests").rows;
    for row in rows {
        assert!((num(&row[2]) - num(&row[3])).abs() < 1e-12);
        assert!(num(&row[2]) > num(&row[1]));
    }
    assert!(r.get_fact("ppv_after_2").unwrap() > 0.75);
    assert!(r.get_fact("ppv_after_3").unwrap() > 0.98);
}

#[test]
fn experiment_ppv_rises_with_prevalence_and_specificity() {
    let rows = &table(dt(), "by_prevalence").rows;
    let n_sp = diagnostic_test::Config::quick().specificities.len();
    for col in 2..2 + n_sp {
        assert!(rows.windows(2).all(|w| num(&w[1][col]) > num(&w[0][col])));
    }
    for row in rows {
        assert!(row[2..2 + n_sp].windows(2).all(|w| num(&w[1]) > num(&w[0])));
    }
}
