//! Chapter 9.1, forecasting: the metrics on hand-computed cases, the baselines by hand,
//! scaling and windows that never see the held-out tail, the two strategies, the ridge
//! autoregression, bad input as clear errors, and the claims about the experiment's
//! results.

use dlbook::data::DataDir;
use dlbook::experiments;
use dlbook::report::{Report, Value};
use dlbook::seq::{
    evaluate, linear_ar, load, mae, mase, rmse, seasonal_naive_mae, split_tail, windows,
    Drift, Forecast, Forecaster, Naive, Named, Ridge, Scaler, SeasonalNaive, Strategy,
    Transform, WindowModel, WindowPredict,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn dir() -> DataDir {
    DataDir::resolve(None)
}

fn series(named: Named) -> Vec<f64> {
    load(&dir(), named).unwrap().values
}

// ANCHOR: metrics_by_hand
/// MAE, RMSE and MASE of a four-step forecast with errors -1, 0, 2, 0, the MASE scaled
/// by the seasonal naive error of period 2 on a five-value training part.
fn metrics_by_hand() -> (f64, f64, f64, f64) {
    let actual = [1.0, 2.0, 3.0, 4.0];
    let forecast = [2.0, 2.0, 1.0, 4.0];
    let train = [1.0, 3.0, 2.0, 6.0, 4.0];
    let scale = seasonal_naive_mae(&train, 2).unwrap();
    (
        mae(&actual, &forecast),
        rmse(&actual, &forecast),
        scale,
        mase(&actual, &forecast, scale),
    )
}
// ANCHOR_END: metrics_by_hand

#[test]
fn metrics_by_hand_cases() {
    let (m, r, scale, q) = metrics_by_hand();
    // |e| = 1, 0, 2, 0: mean 3/4. e^2 = 1, 0, 4, 0: root of the mean 5/4.
    assert_eq!(m, 0.75);
    assert_eq!(r, (5.0f64 / 4.0).sqrt());
    // |2 - 1|, |6 - 3|, |4 - 2| = 1, 3, 2: mean 2.
    assert_eq!(scale, 2.0);
    assert_eq!(q, 0.375);
    // Period 1: |3-1|, |2-3|, |6-2|, |4-6| = 2, 1, 4, 2: mean 9/4.
    assert_eq!(
        seasonal_naive_mae(&[1.0, 3.0, 2.0, 6.0, 4.0], 1).unwrap(),
        2.25
    );
    // A perfect forecast.
    assert_eq!(mae(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    assert_eq!(rmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
}

#[test]
fn rmse_lies_between_mae_and_sqrt_h_times_mae() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..2000 {
        let h = rng.random_range(1..30);
        let a: Vec<f64> = (0..h).map(|_| rng.random_range(-5.0..5.0)).collect();
        let f: Vec<f64> = (0..h).map(|_| rng.random_range(-5.0..5.0)).collect();
        let (m, r) = (mae(&a, &f), rmse(&a, &f));
        assert!(m <= r * (1.0 + 1e-12), "MAE {m} > RMSE {r}");
        assert!(
            r <= (h as f64).sqrt() * m * (1.0 + 1e-12),
            "RMSE {r} > √H MAE"
        );
    }
    // Equality at both ends: equal errors, and one error among zeros.
    assert_eq!(
        mae(&[1.0, 1.0], &[0.0, 0.0]),
        rmse(&[1.0, 1.0], &[0.0, 0.0])
    );
    let (m, r) = (
        mae(&[4.0, 0.0, 0.0, 0.0], &[0.0; 4]),
        rmse(&[4.0, 0.0, 0.0, 0.0], &[0.0; 4]),
    );
    assert_eq!(r, 2.0 * m);
}

#[test]
fn a_periodic_training_part_has_no_mase_scale() {
    let err = seasonal_naive_mae(&[1.0, 2.0, 1.0, 2.0, 1.0], 2).unwrap_err();
    assert!(format!("{err:#}").contains("scale is 0"), "{err:#}");
    let err = seasonal_naive_mae(&[1.0, 2.0], 2).unwrap_err();
    assert!(format!("{err:#}").contains("more than 2"), "{err:#}");
}

// ANCHOR: baselines_by_hand
/// The three rules on the history 10, 12, 11, 15, 14, 18 for five steps; the seasonal
/// naive forecast with period 3.
fn baselines_by_hand() -> [Vec<f64>; 3] {
    let history = [10.0, 12.0, 11.0, 15.0, 14.0, 18.0];
    let run = |f: &dyn Fn() -> anyhow::Result<Vec<f64>>| f().unwrap();
    [
        run(&|| Naive.fit(&history)?.forecast(&history, 5)),
        run(&|| {
            SeasonalNaive { period: 3 }
                .fit(&history)?
                .forecast(&history, 5)
        }),
        run(&|| Drift.fit(&history)?.forecast(&history, 5)),
    ]
}
// ANCHOR_END: baselines_by_hand

#[test]
fn baselines_by_hand_cases() {
    let [naive, seasonal, drift] = baselines_by_hand();
    assert_eq!(naive, vec![18.0; 5]);
    // The last season 15, 14, 18, repeated.
    assert_eq!(seasonal, vec![15.0, 14.0, 18.0, 15.0, 14.0]);
    // Slope (18 - 10) / 5 = 1.6 per step from 18.
    let want = [19.6, 21.2, 22.8, 24.4, 26.0];
    for (d, w) in drift.iter().zip(want) {
        assert!((d - w).abs() < 1e-12, "{drift:?}");
    }
}

/// The in-sample seasonal naive forecasts of a training part, one season ahead from
/// every origin, made by the forecaster itself.
fn in_sample_seasonal_naive(train: &[f64], m: usize) -> Vec<f64> {
    (m..train.len())
        .map(|t| {
            let f = SeasonalNaive { period: m }.fit(&train[..t]).unwrap();
            f.forecast(&train[..t], 1).unwrap()[0]
        })
        .collect()
}

#[test]
fn seasonal_naive_has_mase_one_on_the_training_part() {
    for named in Named::ALL {
        let y = series(named);
        let (train, _) = split_tail(&y, named.horizon()).unwrap();
        let m = named.period();
        let fitted = in_sample_seasonal_naive(train, m);
        let scale = seasonal_naive_mae(train, m).unwrap();
        let q = mase(&train[m..], &fitted, scale);
        assert!((q - 1.0).abs() < 1e-12, "{named:?}: in-sample MASE {q}");
    }
}

#[test]
fn windows_have_the_right_shapes() {
    let y: Vec<f64> = (0..10).map(f64::from).collect();
    let w = windows(&y, 3, 2).unwrap();
    // n = 10 - 3 - 2 + 1 = 6 pairs.
    assert_eq!(w.inputs.dim(), (6, 3));
    assert_eq!(w.targets.dim(), (6, 2));
    for i in 0..6 {
        let i0 = i as f64;
        assert_eq!(w.inputs.row(i).to_vec(), vec![i0, i0 + 1.0, i0 + 2.0]);
        assert_eq!(w.targets.row(i).to_vec(), vec![i0 + 3.0, i0 + 4.0]);
    }
    // The last target is the last value: every value is used, none beyond.
    assert_eq!(w.targets[[5, 1]], 9.0);
    let d = w.to_dataset();
    assert_eq!(d.x.shape(), &[6, 3, 1]);
    assert_eq!(d.len(), 6);
}

/// A series whose held-out tail is NaN: anything that reads it gives NaN.
fn poisoned(named: Named) -> (Vec<f64>, usize) {
    let mut y = series(named);
    let h = named.horizon();
    let n = y.len();
    y[n - h..].iter_mut().for_each(|v| *v = f64::NAN);
    (y, h)
}

#[test]
fn no_window_reaches_into_the_tail() {
    for named in Named::ALL {
        let (y, h) = poisoned(named);
        let (train, tail) = split_tail(&y, h).unwrap();
        assert!(tail.iter().all(|v| v.is_nan()) && train.iter().all(|v| v.is_finite()));
        let w = windows(train, 2 * named.period(), h).unwrap();
        assert!(w.inputs.iter().chain(&w.targets).all(|v| v.is_finite()));
        // Fitted and run on the training part, every method gives a finite forecast:
        // had any window or statistic read the tail, a NaN would have spread.
        for strategy in [Strategy::Recursive, Strategy::Direct { horizon: h }] {
            let ar = linear_ar(named.period(), 1e-3, strategy, named.transform());
            let f = ar.fit(train).unwrap().forecast(train, h).unwrap();
            assert!(f.iter().all(|v| v.is_finite()), "{named:?} {strategy:?}");
        }
        let f = Drift.fit(train).unwrap().forecast(train, h).unwrap();
        assert!(f.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn scaling_uses_the_training_part_only() {
    let named = Named::AirPassengers;
    let y = series(named);
    let h = named.horizon();
    let mut changed = y.clone();
    let n = y.len();
    changed[n - h..].iter_mut().for_each(|v| *v *= 10.0);
    let strategy = Strategy::Direct { horizon: h };
    let ar = linear_ar(24, 1e-3, strategy, Transform::Log);
    let fit = |y: &[f64]| {
        let (train, _) = split_tail(y, h).unwrap();
        ar.fit(train).unwrap()
    };
    let (a, b) = (fit(&y), fit(&changed));
    // The same scaler and the same model: the tail reached neither.
    assert_eq!(a.scaler, b.scaler);
    assert_eq!(a, b);
    // The scaler is the training part's log mean and deviation.
    let (train, _) = split_tail(&y, h).unwrap();
    let logs: Vec<f64> = train.iter().map(|v| v.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    assert!((a.scaler.mean - mean).abs() < 1e-12);
    // The tail does change the score, so the comparison above could have failed.
    let score = |y: &[f64]| {
        let (train, test) = split_tail(y, h).unwrap();
        evaluate(&ar, train, test, 12).unwrap()
    };
    let (sa, sb) = (score(&y), score(&changed));
    assert_eq!(sa.forecast, sb.forecast);
    assert!(sb.mae > 5.0 * sa.mae);
    // Scaled over the whole series instead, the mean would move with the tail.
    let whole = |y: &[f64]| Scaler::fit(y, Transform::Log).unwrap().mean;
    assert!(whole(&changed) > whole(&y) + 0.1);
}

#[test]
fn scaling_round_trips() {
    let y = series(Named::AirPassengers);
    for t in [Transform::Identity, Transform::Log] {
        let s = Scaler::fit(&y[..100], t).unwrap();
        let z = s.transform(&y).unwrap();
        let back = s.inverse(&z);
        for (a, b) in y.iter().zip(&back) {
            assert!((a - b).abs() < 1e-9 * a.abs(), "{t:?}: {a} -> {b}");
        }
        // Standardised on the training part: mean 0 and deviation 1 there.
        let zt = &z[..100];
        let mean = zt.iter().sum::<f64>() / 100.0;
        let var = zt.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 100.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
    }
}

#[test]
fn recursive_equals_direct_for_one_step() {
    for named in Named::ALL {
        let y = series(named);
        let (train, _) = split_tail(&y, named.horizon()).unwrap();
        for p in [named.period(), 2 * named.period()] {
            let rec = linear_ar(p, 1e-2, Strategy::Recursive, named.transform());
            let dir =
                linear_ar(p, 1e-2, Strategy::Direct { horizon: 1 }, named.transform());
            let (fr, fd) = (rec.fit(train).unwrap(), dir.fit(train).unwrap());
            assert_eq!(fr.fitted.fitted, fd.fitted.fitted, "{named:?} p={p}");
            let a = fr.forecast(train, 1).unwrap();
            let b = fd.forecast(train, 1).unwrap();
            assert_eq!(a[0].to_bits(), b[0].to_bits(), "{named:?} p={p}");
        }
    }
}

#[test]
fn recursive_and_direct_differ_beyond_one_step() {
    let named = Named::Co2;
    let y = series(named);
    let (train, _) = split_tail(&y, 24).unwrap();
    let rec = linear_ar(24, 1e-2, Strategy::Recursive, Transform::Identity);
    let dir = linear_ar(
        24,
        1e-2,
        Strategy::Direct { horizon: 24 },
        Transform::Identity,
    );
    let a = rec.fit(train).unwrap().forecast(train, 24).unwrap();
    let b = dir.fit(train).unwrap().forecast(train, 24).unwrap();
    assert_ne!(a[23], b[23]);
}

/// An exact autoregression: y_t = 0.3 + 1.5 y_{t-1} - 0.7 y_{t-2}, from y_0 = 1, y_1 = 2.
fn ar2(n: usize) -> Vec<f64> {
    let mut y = vec![1.0, 2.0];
    for t in 2..n {
        y.push(0.3 + 1.5 * y[t - 1] - 0.7 * y[t - 2]);
    }
    y
}

#[test]
fn ridge_recovers_a_noise_free_autoregression() {
    let w = windows(&ar2(60), 2, 1).unwrap();
    let fit = Ridge { lambda: 0.0 }.fit_windows(&w).unwrap();
    // Window order is oldest first: the weights are (-0.7, 1.5).
    assert!(
        (fit.weights[[0, 0]] + 0.7).abs() < 1e-8,
        "{:?}",
        fit.weights
    );
    assert!(
        (fit.weights[[1, 0]] - 1.5).abs() < 1e-8,
        "{:?}",
        fit.weights
    );
    assert!((fit.bias[0] - 0.3).abs() < 1e-8, "{:?}", fit.bias);
    assert!((fit.predict(&[1.0, 2.0])[0] - (0.3 + 3.0 - 0.7)).abs() < 1e-8);
}

#[test]
fn ridge_solves_its_normal_equations() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let y: Vec<f64> = (0..80).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w = windows(&y, 5, 3).unwrap();
    let n = w.len() as f64;
    for lambda in [1e-3, 0.1, 2.0] {
        let fit = Ridge { lambda }.fit_windows(&w).unwrap();
        let xm = w.inputs.mean_axis(ndarray::Axis(0)).unwrap();
        let ym = w.targets.mean_axis(ndarray::Axis(0)).unwrap();
        let xc = &w.inputs - &xm;
        let yc = &w.targets - &ym;
        // Xc^T (Yc - Xc W) = n lambda W.
        let lhs = xc.t().dot(&(&yc - &xc.dot(&fit.weights)));
        let rhs = &fit.weights * (n * lambda);
        let err = (&lhs - &rhs).iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(
            err < 1e-10,
            "lambda {lambda}: normal equations off by {err}"
        );
        // The unpenalised intercept: the fit passes through the means.
        let at_mean = &xm.dot(&fit.weights) + &fit.bias;
        assert!((&at_mean - &ym).iter().all(|v| v.abs() < 1e-12));
    }
}

#[test]
fn a_multi_output_ridge_is_one_ridge_per_output() {
    let y = series(Named::Sunspots);
    let w = windows(&y, 11, 4).unwrap();
    let all = Ridge { lambda: 0.01 }.fit_windows(&w).unwrap();
    for j in 0..4 {
        let one = dlbook::seq::Windows {
            inputs: w.inputs.clone(),
            targets: w.targets.slice(ndarray::s![.., j..j + 1]).to_owned(),
        };
        let single = Ridge { lambda: 0.01 }.fit_windows(&one).unwrap();
        for (a, b) in all.weights.column(j).iter().zip(single.weights.column(0)) {
            assert!(
                (a - b).abs() < 1e-9 * (1.0 + a.abs()),
                "output {j}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let y = series(Named::AirPassengers);
    let msg = |e: anyhow::Error| format!("{e:#}");
    // A horizon as long as the series leaves nothing to train on.
    let e = msg(split_tail(&y, y.len()).unwrap_err());
    assert!(e.contains("shorter horizon"), "{e}");
    let e = msg(split_tail(&y, 0).unwrap_err());
    assert!(e.contains("at least 1"), "{e}");
    // A window longer than the training part.
    let (train, _) = split_tail(&y, 24).unwrap();
    let e = msg(windows(train, 200, 1).unwrap_err());
    assert!(e.contains("shorter window"), "{e}");
    let ar = linear_ar(200, 1e-3, Strategy::Recursive, Transform::Log);
    let e = msg(ar.fit(train).unwrap_err());
    assert!(e.contains("needs 201 values, the series has 120"), "{e}");
    // A direct model asked for more steps than it was fitted for.
    let ar = linear_ar(12, 1e-3, Strategy::Direct { horizon: 6 }, Transform::Log);
    let e = msg(ar.fit(train).unwrap().forecast(train, 7).unwrap_err());
    assert!(e.contains("fitted for 6 steps"), "{e}");
    // A history shorter than the window, and the log of a zero.
    let ar = linear_ar(12, 1e-3, Strategy::Recursive, Transform::Log);
    let e = msg(ar.fit(train).unwrap().forecast(&train[..5], 3).unwrap_err());
    assert!(e.contains("shorter than the model's window"), "{e}");
    let e = msg(Scaler::fit(&[1.0, 0.0, 2.0], Transform::Log).unwrap_err());
    assert!(e.contains("positive"), "{e}");
    let e = msg(SeasonalNaive { period: 12 }.fit(&train[..5]).unwrap_err());
    assert!(e.contains("at least 12"), "{e}");
}

fn report() -> &'static Report {
    experiments::quick("forecast_baselines", &dir()).unwrap()
}

/// The MASE of `method` on `series` in the report's MASE table.
fn report_mase(series: Named, method: &str) -> f64 {
    mase_in(report(), series, method)
}

/// The MASE (the mean over seeds, for a network) of `method` on `series` in the MASE
/// table of `r`.
fn mase_in(r: &Report, series: Named, method: &str) -> f64 {
    let t = r.table("mase").unwrap();
    let j = t
        .columns
        .iter()
        .position(|c| c.header == series.name())
        .unwrap();
    let row = t
        .rows
        .iter()
        .find(|r| r[0] == Value::from(method))
        .unwrap_or_else(|| panic!("no row {method}"));
    row[j].number().unwrap()
}

#[test]
fn the_report_matches_a_direct_evaluation() {
    // The table's numbers are the evaluation of the methods, not copies of anything.
    for named in Named::ALL {
        let y = series(named);
        let (train, test) = split_tail(&y, named.horizon()).unwrap();
        let m = named.period();
        let sn = evaluate(&SeasonalNaive { period: m }, train, test, m).unwrap();
        let got = report_mase(named, "seasonal naive");
        assert!((got - sn.mase).abs() < 1e-5 * sn.mase, "{named:?}");
        let nv = evaluate(&Naive, train, test, m).unwrap();
        assert!((report_mase(named, "naive") - nv.mase).abs() < 1e-5 * nv.mase);
    }
}

const RULES: [&str; 3] = ["naive", "seasonal naive", "drift"];
const AR: [&str; 2] = ["linear AR, recursive", "linear AR, direct"];

#[test]
fn the_linear_ar_beats_every_rule_on_every_series() {
    for named in Named::ALL {
        let best_rule = RULES
            .iter()
            .map(|m| report_mase(named, m))
            .fold(f64::INFINITY, f64::min);
        for m in AR {
            let q = report_mase(named, m);
            assert!(
                q < best_rule && q < 1.0,
                "{named:?} {m}: {q} vs {best_rule}"
            );
        }
    }
}

#[test]
fn no_rule_reaches_mase_one_on_the_tail() {
    for named in Named::ALL {
        for m in RULES {
            let q = report_mase(named, m);
            assert!(q > 1.0, "{named:?} {m}: MASE {q}");
        }
    }
}

#[test]
fn the_best_rule_depends_on_the_series() {
    let best = |named| {
        RULES
            .into_iter()
            .min_by(|a, b| report_mase(named, a).total_cmp(&report_mase(named, b)))
            .unwrap()
    };
    assert_eq!(best(Named::AirPassengers), "seasonal naive");
    assert_eq!(best(Named::Sunspots), "seasonal naive");
    assert_eq!(best(Named::Co2), "drift");
}

#[test]
fn neither_strategy_wins_everywhere() {
    let rec_wins = |named| report_mase(named, AR[0]) < report_mase(named, AR[1]);
    assert!(rec_wins(Named::AirPassengers));
    assert!(rec_wins(Named::Sunspots));
    assert!(!rec_wins(Named::Co2));
}

#[test]
fn the_log_does_not_decide_the_ar_on_air_passengers() {
    let air = Named::AirPassengers;
    let d_rec =
        report_mase(air, AR[0]) - report_mase(air, "linear AR, recursive, no log");
    let d_dir = report_mase(air, AR[1]) - report_mase(air, "linear AR, direct, no log");
    // The log helps one strategy and hurts the other, by less than 0.1 either way.
    assert!(d_rec < 0.0 && d_dir > 0.0, "{d_rec} {d_dir}");
    assert!(d_rec.abs() < 0.1 && d_dir.abs() < 0.1, "{d_rec} {d_dir}");
}

#[test]
fn air_passengers_swing_grows_with_its_level() {
    let f = |name: &str| report().get_fact(name).unwrap();
    let level = f("air_level_last") / f("air_level_first");
    let range = f("air_range_last") / f("air_range_first");
    let log_range = f("air_log_range_last") / f("air_log_range_first");
    // The raw swing grows at least as fast as the level: multiplicative seasonality.
    assert!(
        range >= level && level > 2.0,
        "range x{range}, level x{level}"
    );
    // On the log scale most of that growth is gone.
    assert!(
        log_range < 1.5 && log_range < range / 2.0,
        "log range x{log_range}"
    );
}

#[test]
fn choices_do_not_depend_on_the_tail() {
    use dlbook::experiments::forecast_baselines::{
        evaluate_series, Config, SeriesConfig,
    };
    use dlbook::experiments::Preset;
    let cfg = Config::full();
    for named in Named::ALL {
        let s = SeriesConfig::of(named);
        let ts = load(&dir(), named).unwrap();
        let mut changed = ts.clone();
        let n = ts.values.len();
        changed.values[n - s.horizon..]
            .iter_mut()
            .for_each(|v| *v = 3.0 * *v + 1.0);
        let (a, b) = (
            evaluate_series(&cfg, &s, &ts).unwrap(),
            evaluate_series(&cfg, &s, &changed).unwrap(),
        );
        for (ra, rb) in a.iter().zip(&b) {
            assert_eq!(ra.chosen, rb.chosen, "{named:?} {}", ra.method);
            assert_eq!(
                ra.eval.forecast, rb.eval.forecast,
                "{named:?} {}",
                ra.method
            );
            assert_ne!(ra.eval.mae, rb.eval.mae);
        }
    }
}

#[test]
fn the_direct_sunspot_model_chose_a_stronger_penalty() {
    let t = report().table("sunspots").unwrap();
    let lambda = |method: &str| -> f64 {
        let row = t.rows.iter().find(|r| r[0] == Value::from(method)).unwrap();
        match &row[2] {
            Value::Text(s) => s.parse().unwrap(),
            v => panic!("λ of {method} is {v:?}"),
        }
    };
    assert!(
        lambda(AR[1]) > lambda(AR[0]),
        "{} {}",
        lambda(AR[1]),
        lambda(AR[0])
    );
}

// --- The recurrent forecasters (experiment `forecast_lstm`) ---

/// The committed full results of `forecast_lstm`, read once.
fn lstm_report() -> &'static Report {
    static R: std::sync::OnceLock<Report> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        experiments::committed(root, "forecast_lstm").unwrap()
    })
}

/// The mean MASE of `method` on `series` in `forecast_lstm`'s MASE table.
pub(crate) fn lstm_mase(series: Named, method: &str) -> f64 {
    mase_in(lstm_report(), series, method)
}

pub(crate) const NETS: [&str; 4] = [
    "LSTM, recursive",
    "LSTM, direct",
    "GRU, recursive",
    "GRU, direct",
];

// ANCHOR: lstm_forecaster
/// An LSTM forecaster of AirPassengers by `strategy`, with the quick preset's small
/// network and budget, fitted on `train` and forecasting `horizon` steps.
fn lstm_forecast(train: &[f64], strategy: Strategy, horizon: usize) -> Vec<f64> {
    use dlbook::experiments::forecast_lstm::Config;
    use dlbook::experiments::Preset;
    let model = Config::quick().model; // an LSTM of 8 units, a few epochs
    let f = model.forecaster(24, strategy, Transform::Log);
    f.fit(train).unwrap().forecast(train, horizon).unwrap()
}
// ANCHOR_END: lstm_forecaster

#[test]
fn the_neural_forecasters_never_see_the_tail() {
    let y = series(Named::AirPassengers);
    let (train, _) = split_tail(&y, 24).unwrap();
    for strategy in [Strategy::Recursive, Strategy::Direct { horizon: 24 }] {
        let a = lstm_forecast(train, strategy, 24);
        // The whole series with its tail tripled: the training part is the same, so
        // the same seed gives the same forecast, bit for bit.
        let mut changed = y.clone();
        let n = changed.len();
        changed[n - 24..].iter_mut().for_each(|v| *v *= 3.0);
        let (train2, _) = split_tail(&changed, 24).unwrap();
        assert_eq!(a, lstm_forecast(train2, strategy, 24), "{strategy:?}");
        assert!(a.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_neural_forecaster_with_too_few_windows_is_a_clear_error() {
    use dlbook::experiments::Preset;
    use dlbook::seq::{Cell, Recurrent, WindowModel};
    let model = Recurrent {
        cell: Cell::Gru,
        ..dlbook::experiments::forecast_lstm::Config::quick().model
    };
    // 30 values, windows of 12 and 12 targets: 7 windows, of which 1 validates and 11
    // more would have to be dropped.
    let w = windows(&(0..30).map(f64::from).collect::<Vec<_>>(), 12, 12).unwrap();
    let e = format!("{:#}", model.fit_windows(&w).unwrap_err());
    assert!(e.contains("leave none for training"), "{e}");
}

fn best_ar(named: Named) -> f64 {
    AR.iter()
        .map(|m| lstm_mase(named, m))
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn no_network_beats_the_linear_ar_on_the_monthly_series() {
    no_network_beats_the_linear_ar_on_the_monthly_series_check();
}

/// The check of [`no_network_beats_the_linear_ar_on_the_monthly_series`], shared with chapter 8's tests.
pub(crate) fn no_network_beats_the_linear_ar_on_the_monthly_series_check() {
    for named in [Named::AirPassengers, Named::Co2] {
        for m in NETS {
            let (q, ar) = (lstm_mase(named, m), best_ar(named));
            assert!(q > ar, "{named:?} {m}: {q} vs the AR's {ar}");
        }
    }
    // On sunspots too, the LSTM stays above the autoregression.
    for m in &NETS[..2] {
        let (q, ar) = (lstm_mase(Named::Sunspots, m), best_ar(Named::Sunspots));
        assert!(q > ar, "sunspots {m}: {q} vs the AR's {ar}");
    }
}

#[test]
fn the_recursive_gru_is_the_best_method_on_sunspots() {
    let t = lstm_report().table("mase").unwrap();
    let gru = lstm_mase(Named::Sunspots, "GRU, recursive");
    for row in &t.rows {
        let Value::Text(m) = &row[0] else { panic!() };
        if m != "GRU, recursive" {
            let q = lstm_mase(Named::Sunspots, m);
            assert!(gru < q, "GRU {gru} vs {m} {q}");
        }
    }
    // Its spread over the seeds is larger than its lead over the autoregression.
    let j = t
        .columns
        .iter()
        .position(|c| c.header == "sunspots")
        .unwrap();
    let row = t
        .rows
        .iter()
        .find(|r| r[0] == Value::from("GRU, recursive"))
        .unwrap();
    let Value::Seeds(v) = &row[j] else {
        panic!("{:?}", row[j])
    };
    let (_, sd) = Value::mean_std(v);
    assert!(sd > best_ar(Named::Sunspots) - gru, "std {sd}");
}

#[test]
fn the_lstm_does_not_beat_seasonal_naive_on_air_passengers() {
    let sn = lstm_mase(Named::AirPassengers, "seasonal naive");
    for m in ["LSTM, recursive", "LSTM, direct", "GRU, direct"] {
        let q = lstm_mase(Named::AirPassengers, m);
        assert!(q > sn, "{m}: {q} vs seasonal naive {sn}");
    }
}

#[test]
fn recursive_networks_beat_seasonal_naive_on_sunspots() {
    let sn = lstm_mase(Named::Sunspots, "seasonal naive");
    for m in ["LSTM, recursive", "GRU, recursive"] {
        let q = lstm_mase(Named::Sunspots, m);
        assert!(q < sn, "{m}: {q} vs seasonal naive {sn}");
    }
}

#[test]
fn changes_beat_levels_on_the_trending_series() {
    for named in [Named::AirPassengers, Named::Co2] {
        for s in ["recursive", "direct"] {
            let (c, l) = (
                lstm_mase(named, &format!("LSTM, {s}")),
                lstm_mase(named, &format!("LSTM, {s}, levels")),
            );
            assert!(c < l, "{named:?} {s}: changes {c}, levels {l}");
        }
    }
    // Sunspots have no trend, and there the recursive model on levels does better.
    let (c, l) = (
        lstm_mase(Named::Sunspots, "LSTM, recursive"),
        lstm_mase(Named::Sunspots, "LSTM, recursive, levels"),
    );
    assert!(l < c, "sunspots: changes {c}, levels {l}");
}

#[test]
fn the_baselines_agree_with_their_own_experiment() {
    // forecast_lstm recomputes the baselines with forecast_baselines' code: same rows.
    for named in Named::ALL {
        for m in ["naive", "seasonal naive", AR[0], AR[1]] {
            let (a, b) = (lstm_mase(named, m), report_mase(named, m));
            assert!((a - b).abs() < 1e-5 * b, "{named:?} {m}: {a} vs {b}");
        }
    }
}

/// On every series, the GRU's best row (recursive or direct) has a lower mean MASE than
/// the LSTM's best row (recursive, direct, or on levels).
#[test]
fn the_gru_forecasts_better_than_the_lstm_on_every_series() {
    the_gru_forecasts_better_than_the_lstm_on_every_series_check();
}

/// The check of [`the_gru_forecasts_better_than_the_lstm_on_every_series`], shared with chapter 8's tests.
pub(crate) fn the_gru_forecasts_better_than_the_lstm_on_every_series_check() {
    let lstm_rows = [
        NETS[0],
        NETS[1],
        "LSTM, recursive, levels",
        "LSTM, direct, levels",
    ];
    for named in [Named::AirPassengers, Named::Co2, Named::Sunspots] {
        let best = |rows: &[&str]| {
            rows.iter()
                .map(|m| lstm_mase(named, m))
                .fold(f64::INFINITY, f64::min)
        };
        let (gru, lstm) = (best(&NETS[2..]), best(&lstm_rows));
        assert!(gru < lstm, "{named:?}: GRU {gru} vs LSTM {lstm}");
    }
}
