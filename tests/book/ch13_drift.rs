//! Chapter 13.4, drift detection: the tests against scipy (and Evidently) on the fixed
//! inputs of `tests/fixtures/ch13_drift/` (made by its `make.py`), the monitor's
//! behaviour and errors, and the claims about the two experiments: `drift_tests`
//! (false alarms and power against the sample size) and `drift_stream` (the served CNN
//! meets shifted requests).

use std::path::Path;

use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::experiments::drift_stream::{DETECTOR_SLUGS, SCENARIO_SLUGS};
use dlbook::mlops::drift::{
    chi_square, ks_2samp, ks_exact_p, wasserstein, Detector, FittedPsi, Mmd,
    MonitorConfig, Psi, Request,
};
use dlbook::report::Report;
use ndarray::Array2;
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ch13_drift/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A float written by Python as its repr: the very double it was.
fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn counts(v: &Value) -> Vec<u64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

// ANCHOR: ks_vs_scipy
/// Our KS test on the fixture's seven pairs of samples: (statistic, exact p,
/// asymptotic p) next to scipy's `ks_2samp(method="exact")` and `kstwobign.sf`.
fn ks_pairs() -> Vec<([f64; 3], [f64; 3])> {
    fixture()["ks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let t = ks_2samp(&nums(&case["x"]), &nums(&case["y"])).unwrap();
            let scipy = ["statistic", "p_exact", "p_kolmogorov"].map(|k| num(&case[k]));
            ([t.statistic, t.p_exact, t.p_asymptotic], scipy)
        })
        .collect()
}
// ANCHOR_END: ks_vs_scipy

#[test]
fn ks_statistic_and_p_values_match_scipy() {
    for (ours, scipy) in ks_pairs() {
        // scipy divides the CDFs differently: the same number, to an ulp or two.
        assert!(
            close(ours[0], scipy[0], 1e-15),
            "statistic {ours:?} vs {scipy:?}"
        );
        assert!(
            close(ours[1], scipy[1], 1e-10),
            "exact p {ours:?} vs {scipy:?}"
        );
        assert!(
            close(ours[2], scipy[2], 1e-10),
            "asymptotic p {ours:?} vs {scipy:?}"
        );
    }
}

#[test]
fn the_asymptotic_p_value_misleads_on_small_samples() {
    // On the 7-vs-13 pair and the 20-vs-20 pairs the Kolmogorov limit is off from the
    // exact p by more than 1e-3; it is an approximation, not a second opinion.
    let worst = ks_pairs()
        .iter()
        .map(|(o, _)| (o[1] - o[2]).abs())
        .fold(0.0, f64::max);
    assert!(worst > 1e-3, "largest gap {worst}");
}

#[test]
fn exact_ks_counts_lattice_paths() {
    // n = m = 2: of the C(4, 2) = 6 interleavings, xxyy and yyxx reach D = 1.
    assert!((ks_exact_p(2, 2, 1.0) - 2.0 / 6.0).abs() < 1e-15);
    // n = 1, m = 3: D = 1 when the lone x is first or last: 2 of 4 orders.
    assert!((ks_exact_p(1, 3, 1.0) - 0.5).abs() < 1e-15);
}

#[test]
fn chi_square_matches_scipy() {
    for case in fixture()["chi_square"].as_array().unwrap() {
        let t =
            chi_square(&counts(&case["reference"]), &counts(&case["current"])).unwrap();
        assert_eq!(t.df as u64, case["df"].as_u64().unwrap());
        assert!(close(t.statistic, num(&case["statistic"]), 1e-12), "{t:?}");
        assert!(close(t.p_value, num(&case["p_value"]), 1e-10), "{t:?}");
    }
}

#[test]
fn wasserstein_matches_scipy() {
    for case in fixture()["wasserstein"].as_array().unwrap() {
        let w = wasserstein(&nums(&case["x"]), &nums(&case["y"])).unwrap();
        assert!(close(w, num(&case["distance"]), 1e-12), "{w}");
    }
}

/// The PSI of the fixture's samples: with the module's decile bins, and with the bins
/// Evidently chose (Sturges equal-width bins over both samples).
fn psi_pair() -> (f64, f64) {
    let f = fixture();
    let (r, c) = (nums(&f["psi"]["reference"]), nums(&f["psi"]["current"]));
    let ours = Psi { n_bins: 10 }.fit(&r).unwrap().score(&c).unwrap();
    let edges = nums(&f["evidently"]["inner_edges"]);
    let evidently_bins = FittedPsi::from_edges(edges, &r).unwrap().score(&c).unwrap();
    (ours, evidently_bins)
}

#[test]
fn psi_matches_numpy_and_evidently() {
    let f = fixture();
    let (ours, on_their_bins) = psi_pair();
    assert!(close(ours, num(&f["psi"]["psi"]), 1e-12), "{ours}");
    assert!(
        close(on_their_bins, num(&f["evidently"]["psi"]), 1e-12),
        "{on_their_bins}"
    );
}

#[test]
fn psi_depends_on_the_binning() {
    // Same samples, two binnings: the score moves by more than the 0.1 that separates
    // "stable" from "moderate shift" (a PSI is only comparable at fixed bins).
    let (deciles, sturges) = psi_pair();
    assert!((deciles - sturges).abs() > 0.05, "{deciles} vs {sturges}");
}

#[test]
fn normed_wasserstein_matches_evidently() {
    let f = fixture();
    let (r, c) = (nums(&f["psi"]["reference"]), nums(&f["psi"]["current"]));
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let std = (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
    let w = wasserstein(&r, &c).unwrap() / std;
    assert!(
        close(w, num(&f["evidently"]["wasserstein_norm"]), 1e-12),
        "{w}"
    );
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(nums).collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

#[test]
fn mmd_matches_numpy_and_its_p_value_is_seeded() {
    let f = &fixture()["mmd"];
    let (x, y) = (matrix(&f["x"]), matrix(&f["y"]));
    let mmd = Mmd {
        n_permutations: 200,
        seed: 7,
    };
    let t = mmd.test(x.view(), y.view()).unwrap();
    assert!(close(t.bandwidth, num(&f["bandwidth"]), 1e-12), "{t:?}");
    assert!(close(t.mmd2, num(&f["mmd2"]), 1e-12), "{t:?}");
    assert_eq!(t, mmd.test(x.view(), y.view()).unwrap());
    assert!(t.p_value > 0.0 && t.p_value <= 1.0);
}

#[test]
fn bad_inputs_get_errors_that_say_what_is_wrong() {
    let err = |r: anyhow::Result<f64>| format!("{:#}", r.unwrap_err());
    assert!(err(wasserstein(&[], &[1.0])).contains("reference sample is empty"));
    assert!(err(wasserstein(&[1.0], &[f64::NAN])).contains("not finite"));
    let chi = chi_square(&[1, 2, 3], &[4, 5]).unwrap_err();
    assert!(format!("{chi:#}").contains("3 reference categories but 2"));
    let (x, y) = (Array2::<f64>::zeros((4, 2)), Array2::<f64>::zeros((4, 3)));
    let mmd = Mmd {
        n_permutations: 5,
        seed: 0,
    }
    .test(x.view(), y.view());
    assert!(format!("{:#}", mmd.unwrap_err()).contains("2 and 3 features"));
    let edges = FittedPsi::from_edges(vec![1.0, 0.0], &[0.5]);
    assert!(format!("{:#}", edges.unwrap_err()).contains("increasing"));
}

fn monitor_config() -> MonitorConfig {
    MonitorConfig {
        window: 50,
        check_every: 10,
        alpha: 0.01,
        psi_bins: 10,
        psi_threshold: 0.2,
        n_permutations: 200,
        n_calibration: 100,
        seed: 0,
    }
}

/// Deterministic "requests": class `i % 10`, confidence and ink spread evenly, and a
/// two-number embedding; `shift` moves the ink and the embedding.
fn requests(n: usize, offset: usize, shift: f64) -> Vec<Request> {
    (0..n)
        .map(|k| {
            let i = k + offset;
            let u = ((i * 7919) % 1000) as f64 / 1000.0;
            Request {
                class: i % 10,
                confidence: 0.5 + 0.5 * u,
                ink: 0.1 + 0.05 * ((i * 104_729) % 997) as f64 / 997.0 + shift,
                embedding: vec![u + shift, ((i * 31) % 17) as f64 / 17.0],
            }
        })
        .collect()
}

#[test]
fn the_monitor_checks_every_few_requests_and_sees_a_shift() {
    let mut m = monitor_config().fit(requests(500, 0, 0.0)).unwrap();
    let mut checks = vec![];
    for r in requests(100, 500, 0.0)
        .into_iter()
        .chain(requests(100, 600, 0.5))
    {
        if let Some(s) = m.observe(r).unwrap() {
            checks.push(s);
        }
    }
    // A full window after 50 requests, then a check every 10: at 50, 60, ..., 200.
    assert_eq!(checks.len(), 16);
    let ink_alarm = |s: &Vec<dlbook::mlops::drift::Signal>| {
        s.iter().any(|s| s.detector == Detector::KsInk && s.alarm)
    };
    assert!(!ink_alarm(&checks[0]), "no alarm on clean requests");
    assert!(
        ink_alarm(checks.last().unwrap()),
        "an alarm once the ink moved"
    );
}

#[test]
fn the_monitor_refuses_what_it_cannot_compare() {
    let short = monitor_config().fit(requests(20, 0, 0.0));
    assert!(format!("{:#}", short.err().unwrap()).contains("fewer than one window"));
    let mut m = monitor_config().fit(requests(100, 0, 0.0)).unwrap();
    let mut odd = requests(1, 0, 0.0).remove(0);
    odd.embedding.push(1.0);
    assert!(format!("{:#}", m.observe(odd).unwrap_err()).contains("3 values"));
}

fn committed(name: &str) -> Report {
    experiments::committed(Path::new(env!("CARGO_MANIFEST_DIR")), name).unwrap()
}

fn quick(name: &str) -> &'static Report {
    experiments::quick(name, &DataDir::resolve(None)).unwrap()
}

/// A rate of the committed `drift_tests` results: `false_alarms` or `power`, a test's
/// stem, a sample size.
fn rate(kind: &str, test: &str, n: usize) -> f64 {
    committed("drift_tests")
        .get_fact(&format!("{kind}_{test}_{n}"))
        .unwrap_or_else(|| panic!("no fact {kind}_{test}_{n}"))
}

fn sizes() -> Vec<usize> {
    let cfg = experiments::by_name("drift_tests").unwrap();
    serde_json::from_value((cfg.config)(experiments::Tier::Full)["sizes"].clone())
        .unwrap()
}

#[test]
fn tests_with_a_p_value_keep_their_false_alarm_rate() {
    // alpha = 0.05 over 500 resamples per size: a rate's standard error is about 1 %.
    for test in ["ks_exact", "wasserstein", "mmd", "chi_square"] {
        for n in sizes() {
            let r = rate("false_alarms", test, n);
            assert!(r <= 0.08, "{test} at n = {n}: {r}");
        }
    }
}

#[test]
fn a_fixed_psi_threshold_cries_wolf_on_small_windows() {
    let n = sizes();
    let (small, large) = (n[0], n[n.len() - 1]);
    let (fs, fl) = (
        rate("false_alarms", "psi", small),
        rate("false_alarms", "psi", large),
    );
    assert!(fs > 0.5, "PSI false alarms at n = {small}: {fs}");
    assert!(fl < 0.05, "PSI false alarms at n = {large}: {fl}");
}

#[test]
fn power_grows_with_the_sample_size() {
    let n = sizes();
    let (small, large) = (n[0], n[n.len() - 1]);
    for test in [
        "ks_exact",
        "ks_asymptotic",
        "wasserstein",
        "mmd",
        "chi_square",
    ] {
        let (ps, pl) = (rate("power", test, small), rate("power", test, large));
        assert!(
            pl > ps && pl > 0.9,
            "{test}: power {ps} at {small}, {pl} at {large}"
        );
    }
    // The quick preset shows it too.
    let q = quick("drift_tests");
    let p = |n: usize| q.get_fact(&format!("power_ks_exact_{n}")).unwrap();
    assert!(p(100) > p(25));
}

#[test]
fn the_monitor_refuses_too_few_shuffles_for_its_alpha() {
    // 50 shuffles: the smallest p-value is 1/51, above alpha = 0.01.
    let cfg = MonitorConfig {
        n_permutations: 50,
        ..monitor_config()
    };
    let err = cfg.fit(requests(100, 0, 0.0)).err().unwrap();
    assert!(
        format!("{err:#}")
            .contains("50 shuffles cannot give the MMD a p-value below alpha"),
        "{err:#}"
    );
    // 100 shuffles reach 1/101, below it.
    let cfg = MonitorConfig {
        n_permutations: 100,
        ..monitor_config()
    };
    assert!(cfg.fit(requests(100, 0, 0.0)).is_ok());
}

/// A fact of the committed `drift_stream` results: `kind` (`detected`, `delay_max`,
/// `delay_median`, `before_accuracy`), a scenario's stem, a detector's stem.
fn stream_fact(report: &Report, kind: &str, scenario: &str, detector: &str) -> f64 {
    let name = format!("{kind}_{scenario}_{detector}");
    report
        .get_fact(&name)
        .unwrap_or_else(|| panic!("drift_stream has no fact {name}"))
}

/// The drift detectors' stems (the accuracy's test, last, left out).
const STREAM_DETECTORS: &[&str] = DETECTOR_SLUGS.split_at(DETECTOR_SLUGS.len() - 1).0;

/// The full preset's `check_every`, from the registered configuration.
fn stream_check_every() -> f64 {
    let cfg = experiments::by_name("drift_stream").unwrap();
    (cfg.config)(experiments::Tier::Full)["monitor"]["check_every"]
        .as_f64()
        .unwrap()
}

#[test]
fn every_detector_sees_fashion_mnist_within_three_checks() {
    let r = committed("drift_stream");
    let step = stream_check_every();
    for d in STREAM_DETECTORS {
        assert_eq!(stream_fact(&r, "detected", "fashion_sudden", d), 1.0, "{d}");
        let slowest = stream_fact(&r, "delay_max", "fashion_sudden", d);
        assert!(slowest <= 3.0 * step, "{d}: slowest stream {slowest}");
        // And before the labels could tell, in every stream.
        assert_eq!(
            stream_fact(&r, "before_accuracy", "fashion_sudden", d),
            1.0,
            "{d}"
        );
    }
    // The quick preset's single stream shows it too.
    let q = quick("drift_stream");
    for d in STREAM_DETECTORS {
        assert_eq!(
            stream_fact(q, "detected", "fashion_sudden", d),
            1.0,
            "quick: {d}"
        );
    }
}

#[test]
fn ink_detectors_miss_the_rotation_that_the_model_feels() {
    let r = committed("drift_stream");
    for d in ["ks_ink", "wasserstein"] {
        let sudden = stream_fact(&r, "detected", "rotation_sudden", d);
        assert!(sudden < 0.5, "{d} on the sudden rotation: {sudden}");
        assert_eq!(
            stream_fact(&r, "detected", "rotation_gradual", d),
            0.0,
            "{d}"
        );
    }
    for d in ["ks_confidence", "mmd"] {
        assert_eq!(
            stream_fact(&r, "detected", "rotation_sudden", d),
            1.0,
            "{d}"
        );
        assert_eq!(
            stream_fact(&r, "before_accuracy", "rotation_sudden", d),
            1.0,
            "{d}"
        );
    }
}

#[test]
fn on_the_gradual_rotation_only_the_confidence_beats_the_labels() {
    let r = committed("drift_stream");
    for d in ["psi", "ks_confidence"] {
        assert_eq!(
            stream_fact(&r, "before_accuracy", "rotation_gradual", d),
            1.0,
            "{d}"
        );
    }
    let mmd = stream_fact(&r, "before_accuracy", "rotation_gradual", "mmd");
    assert!(mmd < 0.5, "MMD before the accuracy in {mmd} of the streams");
    let chi = stream_fact(&r, "before_accuracy", "rotation_gradual", "chi_square");
    assert_eq!(chi, 0.0);
}

#[test]
fn drift_is_not_harm_noise_moves_the_inputs_not_the_accuracy() {
    let r = committed("drift_stream");
    let acc = |sc: &str| r.get_fact(&format!("final_accuracy_{sc}")).unwrap();
    let (clean, noisy) = (acc("none"), acc("noise_sudden"));
    assert!(noisy > clean - 0.03, "noise: {noisy}, no shift: {clean}");
    let step = stream_check_every();
    for d in ["ks_ink", "wasserstein"] {
        assert_eq!(stream_fact(&r, "detected", "noise_sudden", d), 1.0, "{d}");
        let slowest = stream_fact(&r, "delay_max", "noise_sudden", d);
        assert!(slowest <= 2.0 * step, "{d}: {slowest}");
    }
}

#[test]
fn rotation_costs_the_most_accuracy_of_the_digit_shifts() {
    let r = committed("drift_stream");
    let acc = |sc: &str| r.get_fact(&format!("final_accuracy_{sc}")).unwrap();
    let rotated = acc("rotation_sudden");
    assert!(rotated < 0.5, "{rotated}");
    for sc in ["noise_sudden", "thicker_sudden", "thinner_sudden"] {
        assert!(acc(sc) > rotated + 0.3, "{sc}: {} vs {rotated}", acc(sc));
    }
}

#[test]
fn detectors_keep_their_false_alarms_and_the_accuracy_test_does_not() {
    let r = committed("drift_stream");
    let cfg = experiments::by_name("drift_stream").unwrap();
    let alpha = (cfg.config)(experiments::Tier::Full)["monitor"]["alpha"]
        .as_f64()
        .unwrap();
    let fa = |d: &str| r.get_fact(&format!("false_alarms_{d}")).unwrap();
    let worst = STREAM_DETECTORS.iter().map(|d| fa(d)).fold(0.0, f64::max);
    assert!(
        worst <= alpha,
        "a detector's false alarms per check: {worst}"
    );
    let accuracy = fa("accuracy");
    assert!(
        accuracy > 2.0 * worst && accuracy > alpha,
        "accuracy's test {accuracy}, worst detector {worst}"
    );
}

#[test]
fn the_confidence_ks_beats_the_labels_in_every_shifted_stream() {
    let r = committed("drift_stream");
    // Every scenario but the first, "no shift".
    for sc in &SCENARIO_SLUGS[1..] {
        let share = stream_fact(&r, "before_accuracy", sc, "ks_confidence");
        assert_eq!(share, 1.0, "{sc}: {share}");
    }
    // Not for free: its false alarms are at least the median detector's.
    let fa = |d: &str| r.get_fact(&format!("false_alarms_{d}")).unwrap();
    let mut all: Vec<f64> = STREAM_DETECTORS.iter().map(|d| fa(d)).collect();
    all.sort_by(f64::total_cmp);
    assert!(fa("ks_confidence") >= all[all.len() / 2], "{all:?}");
}

#[test]
fn gradual_shifts_are_found_later_than_sudden_ones() {
    let r = committed("drift_stream");
    for shift in ["rotation", "fashion"] {
        for d in DETECTOR_SLUGS {
            let median =
                |how: &str| r.get_fact(&format!("delay_median_{shift}_{how}_{d}"));
            let sudden =
                median("sudden").unwrap_or_else(|| panic!("{shift} {d}: never seen"));
            // No median: no gradual stream alarmed at all.
            if let Some(gradual) = median("gradual") {
                assert!(gradual > sudden, "{shift} {d}: {gradual} vs {sudden}");
            }
        }
    }
}
