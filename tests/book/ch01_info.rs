//! Chapter 1.2, information theory: usage listings and the claims they check.

use std::f64::consts::LN_2;
use std::sync::OnceLock;

use dlbook::data::DataDir;
use dlbook::experiments::information::Config;
use dlbook::experiments::{self, Preset as _};
use dlbook::info;
use dlbook::report::{Plot, Report, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random distribution over `n` outcomes; with `zeros`, some entries are exactly 0.
fn random_dist(rng: &mut ChaCha8Rng, n: usize, zeros: bool) -> Vec<f64> {
    let mut w: Vec<f64> = (0..n)
        .map(|_| {
            let x: f64 = rng.random();
            // Cubing spreads the entries over several orders of magnitude.
            if zeros && rng.random::<f64>() < 0.2 {
                0.0
            } else {
                x * x * x
            }
        })
        .collect();
    if w.iter().all(|&x| x == 0.0) {
        w[0] = 1.0;
    }
    info::normalize(&w).unwrap()
}

const TRIALS: usize = 2000;

// ANCHOR: entropy_examples
/// Entropy of a fair coin in bits, of a fair die in nats (and ln 6), of a certainty.
fn entropy_examples() -> (f64, f64, f64, f64) {
    let coin = info::entropy_bits(&[0.5, 0.5]);
    let die = info::entropy(&[1.0 / 6.0; 6]);
    let sure = info::entropy(&[0.0, 1.0, 0.0]);
    (coin, die, 6f64.ln(), sure)
}
// ANCHOR_END: entropy_examples

// ANCHOR: kl_both_ways
/// KL between a fair and a biased coin, in both directions, and the infinite case.
fn kl_both_ways() -> (f64, f64, f64) {
    let fair = [0.5, 0.5];
    let biased = [0.9, 0.1];
    let certain = [1.0, 0.0];
    (
        info::kl_divergence(&fair, &biased),
        info::kl_divergence(&biased, &fair),
        info::kl_divergence(&fair, &certain), // `certain` rules out tails: +∞
    )
}
// ANCHOR_END: kl_both_ways

// ANCHOR: cross_entropy_loss
/// The classification loss: cross-entropy of a one-hot label with a predicted
/// distribution is `−ln q[label]`.
fn cross_entropy_loss() -> (f64, f64) {
    let predicted = [0.1, 0.7, 0.2];
    let label = [0.0, 1.0, 0.0];
    (info::cross_entropy(&label, &predicted), -(0.7f64).ln())
}
// ANCHOR_END: cross_entropy_loss

// ANCHOR: play_tennis
/// Information gain (bits) of the four attributes of Quinlan's PlayTennis data
/// (outlook, temperature, humidity, wind), the label being "play".
fn play_tennis_gains() -> [f64; 4] {
    // outlook: 0 sunny, 1 overcast, 2 rain; temperature: 0 hot, 1 mild, 2 cool;
    // humidity: 0 high, 1 normal; wind: 0 weak, 1 strong; play: 0 no, 1 yes.
    let rows: [[usize; 5]; 14] = [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [1, 0, 0, 0, 1],
        [2, 1, 0, 0, 1],
        [2, 2, 1, 0, 1],
        [2, 2, 1, 1, 0],
        [1, 2, 1, 1, 1],
        [0, 1, 0, 0, 0],
        [0, 2, 1, 0, 1],
        [2, 1, 1, 0, 1],
        [0, 1, 1, 1, 1],
        [1, 1, 0, 1, 1],
        [1, 0, 1, 0, 1],
        [2, 1, 0, 1, 0],
    ];
    let play: Vec<usize> = rows.iter().map(|r| r[4]).collect();
    let n_values = [3, 3, 2, 2];
    let mut gains = [0.0; 4];
    for (a, g) in gains.iter_mut().enumerate() {
        let branch: Vec<usize> = rows.iter().map(|r| r[a]).collect();
        *g = info::to_bits(info::information_gain(&play, &branch, 2, n_values[a]));
    }
    gains
}
// ANCHOR_END: play_tennis

#[test]
fn zero_log_zero_is_zero() {
    let (_, _, _, sure) = entropy_examples();
    assert_eq!(sure, 0.0);
    // An outcome of probability 0 changes nothing.
    let h = info::entropy(&[0.25, 0.75]);
    assert_eq!(info::entropy(&[0.25, 0.0, 0.75]), h);
}

#[test]
fn fair_coin_has_one_bit() {
    let (coin, die, ln6, _) = entropy_examples();
    assert!((coin - 1.0).abs() < 1e-15);
    assert!((die - ln6).abs() < 1e-15);
    assert!((info::to_bits(die) - 6f64.log2()).abs() < 1e-14);
}

#[test]
fn entropy_maximal_for_uniform() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for t in 0..TRIALS {
        let n = 2 + t % 30;
        let p = random_dist(&mut rng, n, t % 2 == 0);
        let uniform = vec![1.0 / n as f64; n];
        assert!((info::entropy(&uniform) - (n as f64).ln()).abs() < 1e-12);
        assert!(info::entropy(&p) <= (n as f64).ln() + 1e-12, "{p:?}");
        // KL to the uniform is exactly the entropy deficit.
        let deficit = (n as f64).ln() - info::entropy(&p);
        assert!((info::kl_divergence(&p, &uniform) - deficit).abs() < 1e-12);
    }
}

#[test]
fn kl_is_nonnegative() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for t in 0..TRIALS {
        let n = 2 + t % 20;
        let p = random_dist(&mut rng, n, t % 3 == 0);
        let q = random_dist(&mut rng, n, false);
        let d = info::kl_divergence(&p, &q);
        assert!(d >= 0.0 && !d.is_nan(), "KL = {d} for {p:?} {q:?}");
    }
}

#[test]
fn kl_zero_iff_equal() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for t in 0..TRIALS {
        let n = 2 + t % 20;
        let p = random_dist(&mut rng, n, t % 2 == 0);
        assert!(info::kl_divergence(&p, &p).abs() < 1e-15);
        let q = random_dist(&mut rng, n, false);
        let gap: f64 = p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum();
        // Pinsker: KL ≥ ½ (Σ|p − q|)², so distinct distributions have KL > 0.
        assert!(info::kl_divergence(&p, &q) >= 0.5 * gap * gap - 1e-12);
        assert!(info::kl_divergence(&p, &q) > 0.0);
    }
}

#[test]
fn kl_is_asymmetric() {
    let (fair_biased, biased_fair, _) = kl_both_ways();
    assert!((fair_biased - biased_fair).abs() > 0.1);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let asymmetric = (0..TRIALS)
        .filter(|_| {
            let p = random_dist(&mut rng, 5, false);
            let q = random_dist(&mut rng, 5, false);
            (info::kl_divergence(&p, &q) - info::kl_divergence(&q, &p)).abs() > 1e-3
        })
        .count();
    assert!(asymmetric > TRIALS * 9 / 10, "{asymmetric} of {TRIALS}");
}

#[test]
fn kl_infinite_when_q_misses_support() {
    let (_, _, infinite) = kl_both_ways();
    assert_eq!(infinite, f64::INFINITY);
    assert_eq!(info::cross_entropy(&[0.5, 0.5], &[1.0, 0.0]), f64::INFINITY);
    // The other way round is finite: p = certain puts no mass where q is zero...
    assert_eq!(info::kl_divergence(&[1.0, 0.0], &[0.5, 0.5]), LN_2);
    // ...and zeros of q where p is zero too are harmless.
    assert!(info::kl_divergence(&[0.5, 0.5, 0.0], &[0.25, 0.75, 0.0]).is_finite());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..TRIALS {
        let p = random_dist(&mut rng, 6, false);
        let mut q = random_dist(&mut rng, 6, false);
        let hole = rng.random_range(0..6);
        q[hole] = 0.0;
        let q = info::normalize(&q).unwrap();
        assert_eq!(info::kl_divergence(&p, &q), f64::INFINITY);
        assert!(info::js_divergence(&p, &q).is_finite());
    }
}

#[test]
fn cross_entropy_is_entropy_plus_kl() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for t in 0..TRIALS {
        let n = 2 + t % 25;
        let p = random_dist(&mut rng, n, t % 2 == 0);
        let q = random_dist(&mut rng, n, false);
        let lhs = info::cross_entropy(&p, &q);
        let rhs = info::entropy(&p) + info::kl_divergence(&p, &q);
        assert!((lhs - rhs).abs() < 1e-12 * lhs.max(1.0), "{lhs} vs {rhs}");
    }
}

#[test]
fn cross_entropy_minimised_at_q_equal_p() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..TRIALS {
        let p = random_dist(&mut rng, 8, false);
        let q = random_dist(&mut rng, 8, false);
        assert!(info::cross_entropy(&p, &q) >= info::cross_entropy(&p, &p) - 1e-12);
        assert!((info::cross_entropy(&p, &p) - info::entropy(&p)).abs() < 1e-14);
    }
}

#[test]
fn cross_entropy_loss_is_negative_log_likelihood() {
    let (loss, nll) = cross_entropy_loss();
    assert!((loss - nll).abs() < 1e-15);
    // The mean loss over samples of p is minimised by predicting p itself.
    let p = [0.2, 0.5, 0.3];
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let labels: Vec<usize> = (0..20_000)
        .map(|_| {
            let u: f64 = rng.random();
            if u < 0.2 {
                0
            } else if u < 0.7 {
                1
            } else {
                2
            }
        })
        .collect();
    let mean_loss =
        |q: &[f64]| labels.iter().map(|&y| -q[y].ln()).sum::<f64>() / labels.len() as f64;
    let at_p = mean_loss(&p);
    for q in [[0.1, 0.6, 0.3], [0.3, 0.4, 0.3], [1.0 / 3.0; 3]] {
        assert!(mean_loss(&q) > at_p);
    }
}

#[test]
fn js_is_symmetric_and_bounded() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for t in 0..TRIALS {
        let n = 2 + t % 20;
        let p = random_dist(&mut rng, n, true);
        let q = random_dist(&mut rng, n, true);
        let (a, b) = (info::js_divergence(&p, &q), info::js_divergence(&q, &p));
        assert!((a - b).abs() < 1e-15);
        assert!((0.0..=LN_2).contains(&a), "JS = {a}");
    }
}

#[test]
fn js_is_ln2_for_disjoint_supports() {
    assert!((info::js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - LN_2).abs() < 1e-15);
    let p = [0.5, 0.5, 0.0, 0.0];
    let q = [0.0, 0.0, 0.3, 0.7];
    assert!((info::js_divergence(&p, &q) - LN_2).abs() < 1e-15);
}

#[test]
#[should_panic(expected = "probabilities must be finite and non-negative")]
fn negative_probability_panics() {
    info::entropy(&[1.5, -0.5]);
}

#[test]
#[should_panic(expected = "sums to 0.9, not 1")]
fn sum_not_one_panics() {
    info::kl_divergence(&[0.5, 0.5], &[0.5, 0.4]);
}

#[test]
#[should_panic(expected = "p has 2 outcomes but q has 3")]
fn length_mismatch_panics() {
    info::cross_entropy(&[0.5, 0.5], &[0.2, 0.3, 0.5]);
}

#[test]
fn mutual_information_is_symmetric_and_nonnegative() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for _ in 0..500 {
        let flat = random_dist(&mut rng, 12, true);
        let joint: Vec<Vec<f64>> = flat.chunks(4).map(|r| r.to_vec()).collect();
        let transposed: Vec<Vec<f64>> = (0..4)
            .map(|y| joint.iter().map(|r| r[y]).collect())
            .collect();
        let i = info::mutual_information(&joint);
        assert!(i >= 0.0);
        assert!((i - info::mutual_information(&transposed)).abs() < 1e-12);
        // I(X;Y) = H(Y) − H(Y|X).
        let (_, py) = info::marginals(&joint);
        let h = info::entropy(&py) - info::conditional_entropy(&joint);
        assert!((i - h).abs() < 1e-12);
        // Independent variables share no information.
        let (px, py) = info::marginals(&joint);
        let product: Vec<Vec<f64>> = px
            .iter()
            .map(|a| py.iter().map(|b| a * b).collect())
            .collect();
        assert!(info::mutual_information(&product) < 1e-12);
    }
}

#[test]
fn information_gain_matches_play_tennis() {
    let [outlook, temperature, humidity, wind] = play_tennis_gains();
    // The values printed in Mitchell's "Machine Learning" (1997), Table 3.2: 0.246,
    // 0.029, 0.151, 0.048 (computed there with rounded intermediate entropies).
    for (got, book) in [
        (outlook, 0.246),
        (temperature, 0.029),
        (humidity, 0.151),
        (wind, 0.048),
    ] {
        assert!((got - book).abs() < 1e-3, "{got} vs {book}");
    }
    assert!(outlook > humidity && humidity > wind && wind > temperature);
}

#[test]
fn gaussian_kl_matches_closed_form() {
    for (s1, s2) in [(1.0, 0.5), (0.5, 1.0), (1.0, 2.0), (1.5, 0.7)] {
        let p = info::discretize(|x| info::gaussian_pdf(x, 0.0, s1), -15.0, 15.0, 8000);
        let q = info::discretize(|x| info::gaussian_pdf(x, 0.3, s2), -15.0, 15.0, 8000);
        let exact = info::gaussian_kl(0.0, s1, 0.3, s2);
        assert!((info::kl_divergence(&p, &q) - exact).abs() < 1e-5);
    }
}

// ---------------------------------------------------------------------------------------
// The experiment

fn report() -> &'static Report {
    static R: OnceLock<Report> = OnceLock::new();
    R.get_or_init(|| {
        experiments::quick("information", &DataDir::resolve(None))
            .cloned()
            .expect("the information experiment runs (is the data directory present?)")
    })
}

fn fact(name: &str) -> f64 {
    report()
        .get_fact(name)
        .unwrap_or_else(|| panic!("no fact {name}"))
}

fn lines(figure: &str) -> &'static [dlbook::report::Series] {
    let f = report().figures.iter().find(|f| f.name == figure).unwrap();
    match &f.plot {
        Plot::Lines { series, .. } => series,
        _ => panic!("{figure} is not a line chart"),
    }
}

#[test]
fn experiment_bernoulli_entropy_peaks_at_one_bit() {
    assert!((fact("bernoulli_max_bits") - 1.0).abs() < 1e-12);
    let s = lines("bernoulli");
    let (h, hq) = (&s[0], &s[1]);
    let peak = h.y.iter().copied().fold(0.0, f64::max);
    let at = h.y.iter().position(|&y| y == peak).unwrap();
    assert!((h.x[at] - 0.5).abs() < 1e-12);
    // Cross-entropy lies above entropy and touches it only at p = q.
    let q = Config::quick().bernoulli_q;
    for ((x, a), b) in h.x.iter().zip(&h.y).zip(&hq.y) {
        assert!(b >= a);
        if (x - q).abs() > 0.05 {
            assert!(b - a > 1e-3);
        } else if (x - q).abs() < 1e-12 {
            assert!((b - a).abs() < 1e-12);
        }
    }
}

#[test]
fn experiment_kl_blows_up_for_narrow_q() {
    let s = lines("kl_asymmetry");
    let (pq, qp, js) = (&s[0], &s[1], &s[2]);
    for i in 0..pq.x.len() {
        let sigma = pq.x[i];
        if sigma < 0.99 {
            assert!(pq.y[i] > qp.y[i], "σ = {sigma}");
        } else if sigma > 1.01 {
            assert!(pq.y[i] < qp.y[i], "σ = {sigma}");
        }
        assert!(js.y[i] <= LN_2 && js.y[i] <= pq.y[i].min(qp.y[i]) + 1e-12);
    }
    assert!(fact("narrow_kl_pq") > 3.0 * fact("narrow_kl_qp"));
}

#[test]
fn experiment_discrete_kl_matches_gaussian_closed_form() {
    assert!(fact("gaussian_kl_max_error") < 1e-4);
}

#[test]
fn experiment_named_pairs() {
    let t = report().table("named_pairs").unwrap();
    let row = |name: &str| t.rows.iter().find(|r| r[0] == Value::from(name)).unwrap();
    let inf = Value::from("∞");
    assert_eq!(row("q misses an outcome")[4], inf);
    assert!(row("q misses an outcome")[5].number().unwrap().is_finite());
    assert_eq!(row("disjoint supports")[4], inf);
    assert!((row("disjoint supports")[6].number().unwrap() - LN_2).abs() < 1e-12);
    assert_eq!(row("identical")[4].number(), Some(0.0));
    let peaked = row("peaked vs uniform");
    assert!((peaked[3].number().unwrap() - 4f64.ln()).abs() < 1e-12);
}

#[test]
fn experiment_context_lowers_entropy() {
    let (u, b, t) = (
        fact("unigram_bits"),
        fact("bigram_bits"),
        fact("trigram_bits"),
    );
    assert!(t < b && b < u && u < fact("max_bits"));
    assert!(u > 4.0 && u < 5.0, "unigram entropy {u} bits");
    assert!(u - b > 1.0, "one character of context saves over a bit");
}

#[test]
fn experiment_heldout_cross_entropy_exceeds_in_sample_entropy() {
    let t = report().table("shakespeare_entropy").unwrap();
    let mut gaps = vec![];
    for row in &t.rows {
        let (train, held_out) = (row[3].number().unwrap(), row[4].number().unwrap());
        assert!(held_out > train);
        gaps.push(held_out - train);
    }
    // The richest model overfits most: its gap is several times the others'.
    assert!(gaps[2] > 3.0 * gaps[0].max(gaps[1]), "gaps {gaps:?}");
    // Even so, more context still predicts held-out text better here.
    let ce: Vec<f64> = ["unigram", "bigram", "trigram"]
        .iter()
        .map(|m| fact(&format!("{m}_heldout_bits")))
        .collect();
    assert!(ce[2] < ce[1] && ce[1] < ce[0]);
}

#[test]
fn experiment_split_gains() {
    let full = fact("full_split_gain_bits");
    // The full split's gain is the entropy drop from unigram to bigram (up to the one
    // character that has no predecessor).
    assert!((full - (fact("unigram_bits") - fact("bigram_bits"))).abs() < 1e-3);
    let t = report().table("split_gain").unwrap();
    let gains: Vec<f64> = t.rows.iter().map(|r| r[2].number().unwrap()).collect();
    let (binary, whole) = gains.split_at(gains.len() - 1);
    assert!(binary.iter().all(|&g| g > 0.0 && g < whole[0]));
    let best = binary.iter().copied().fold(0.0, f64::max);
    assert_eq!(best, fact("best_binary_gain_bits"));
    assert!(
        whole[0] > 5.0 * best,
        "one question recovers a small part of the gain"
    );
    let best_row = &t.rows[gains.iter().position(|&g| g == best).unwrap()];
    assert_eq!(best_row[0], Value::from("previous character is a vowel"));
}

#[test]
fn generated_information_is_current() {
    let text = std::fs::read_to_string("chapters/generated/ch01/information.json")
        .expect("run `dlbook regen information`");
    let stored = Report::from_json(&text).unwrap();
    // The experiment is exact, so the stored numbers must equal a fresh run's (which
    // records no fingerprint of itself).
    let stored = Report {
        quick_fingerprint: None,
        ..stored
    };
    assert_eq!(stored, report().rounded());
}
