//! Chapter 12.4, time series: the ADF and KPSS tests, the ACF and PACF, ARIMA and
//! seasonal ARIMA by exact maximum likelihood, forecasts, Ljung-Box and the order search,
//! each against statsmodels 0.15.0's answers on the book's own series
//! (`tests/fixtures/ch12_tsa/expected.json`, made by its `make.py`).
//!
//! Tolerances. The tests, the ACF and the PACF are closed-form: they match to 1e-9
//! (rounding of sums in a different order). The ARIMA fits are optima found by two
//! different optimisers from different starts on the same likelihood; at the optimum the
//! likelihood is flat to second order, so the log-likelihood agrees far more tightly
//! (1e-2 asked, about 1e-6 seen) than the parameters (1e-3 asked): a parameter error
//! $\epsilon$ costs only about $\epsilon^2/(2\,\mathrm{se}^2)$ in log-likelihood.
//! Standard errors come from numerical second derivatives on both sides (different
//! steps): 2 % relative.

use dlbook::data::DataDir;
use dlbook::seq::{load, Named};
use dlbook::tsa::{
    acf, adf, bartlett_band, kpss, ljung_box, order_search, pacf_durbin_levinson,
    pacf_yule_walker, select::best_by, Arima, ArimaFit, Order, Regression, Trend,
};
use serde_json::Value;

fn series(named: Named) -> Vec<f64> {
    load(&DataDir::resolve(None), named).unwrap().values
}

fn expected() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ch12_tsa/expected.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn close(what: &str, ours: f64, theirs: f64, tol: f64) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours}, statsmodels {theirs}, |diff| {} > {tol}",
        (ours - theirs).abs()
    );
}

fn all_close(what: &str, ours: &[f64], theirs: &[f64], tol: f64) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        close(&format!("{what}[{i}]"), *a, *b, tol);
    }
}

#[test]
fn adf_matches_statsmodels() {
    let e = expected();
    let log_air: Vec<f64> = series(Named::AirPassengers)
        .iter()
        .map(|v| v.ln())
        .collect();
    let log_diff: Vec<f64> = log_air.windows(2).map(|w| w[1] - w[0]).collect();
    for (key, x) in [
        ("air_passengers", series(Named::AirPassengers)),
        ("sunspots", series(Named::Sunspots)),
        ("co2", series(Named::Co2)),
        ("log_air_passengers_diff", log_diff),
    ] {
        let r = adf(&x, Regression::Constant, None).unwrap();
        let t = &e["adf"][key];
        assert_eq!(r.lags as u64, t["lags"].as_u64().unwrap(), "{key} lags");
        assert_eq!(r.nobs as u64, t["nobs"].as_u64().unwrap(), "{key} nobs");
        close(&format!("{key} stat"), r.stat, num(&t["stat"]), 1e-9);
        close(&format!("{key} p"), r.pvalue, num(&t["pvalue"]), 1e-9);
        close(&format!("{key} icbest"), r.icbest, num(&t["icbest"]), 1e-8);
        all_close(&format!("{key} crit"), &r.crit, &nums(&t["crit"]), 1e-12);
    }
}

#[test]
fn kpss_matches_statsmodels() {
    let e = expected();
    for (key, named) in [
        ("air_passengers", Named::AirPassengers),
        ("sunspots", Named::Sunspots),
        ("co2", Named::Co2),
    ] {
        let r = kpss(&series(named), Regression::Constant).unwrap();
        let t = &e["kpss"][key];
        assert_eq!(r.lags as u64, t["lags"].as_u64().unwrap(), "{key} lags");
        close(&format!("{key} stat"), r.stat, num(&t["stat"]), 1e-9);
        close(&format!("{key} p"), r.pvalue, num(&t["pvalue"]), 1e-12);
    }
}

#[test]
fn acf_and_pacf_match_statsmodels() {
    let e = expected();
    let sun = series(Named::Sunspots);
    let rho = acf(&sun, 20);
    all_close("acf", &rho, &nums(&e["acf_sunspots"]), 1e-12);
    let band = bartlett_band(&rho, sun.len(), 1.959_963_984_540_054);
    all_close("bartlett", &band, &nums(&e["acf_sunspots_bartlett"]), 1e-9);
    all_close(
        "pacf yw",
        &pacf_yule_walker(&sun, 20, true),
        &nums(&e["pacf_sunspots_yw"]),
        1e-9,
    );
    all_close(
        "pacf ywm",
        &pacf_yule_walker(&sun, 20, false),
        &nums(&e["pacf_sunspots_ywm"]),
        1e-9,
    );
    all_close(
        "pacf ldb",
        &pacf_durbin_levinson(&sun, 20),
        &nums(&e["pacf_sunspots_ldb"]),
        1e-9,
    );
}

/// Compares a fit, its standard errors, its forecast and its Ljung-Box with the fixture.
fn check_fit(key: &str, fit: &ArimaFit, log_scale: bool) {
    let e = expected();
    let t = &e[key];
    // statsmodels names the drift's coefficient `x1` (a column of its trend data).
    let names: Vec<String> = t["param_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v.as_str().unwrap() {
            "x1" => "drift".into(),
            name => name.into(),
        })
        .collect();
    assert_eq!(fit.param_names, names);
    let theirs = nums(&t["params"]);
    let k = theirs.len() - 1;
    // A trend's coefficient is compared in units of its standard error: the likelihood
    // is flat along the sunspot mean (se 2.9), and two optimisers stop a few hundredths
    // apart on it (see the constant's test).
    let n_trend = fit.trend.n_params();
    let se = nums(&t["bse_approx"]);
    for i in 0..k {
        let tol = if i < n_trend { 0.02 * se[i] } else { 1e-3 };
        close(
            &format!("{key} {}", fit.param_names[i]),
            fit.params[i],
            theirs[i],
            tol,
        );
    }
    // sigma^2 relative: it is 240 on sunspots and 0.0013 on log passengers.
    close(
        &format!("{key} sigma2 rel"),
        fit.params[k] / theirs[k],
        1.0,
        1e-3,
    );
    close(&format!("{key} llf"), fit.llf, num(&t["llf"]), 1e-2);
    close(&format!("{key} aic"), fit.aic, num(&t["aic"]), 2e-2);
    close(&format!("{key} bic"), fit.bic, num(&t["bic"]), 2e-2);
    assert_eq!(
        fit.nobs_effective as u64,
        t["nobs_effective"].as_u64().unwrap()
    );
    for (ours, field) in [(&fit.bse, "bse_approx"), (&fit.bse_opg, "bse_opg")] {
        let rel: Vec<f64> = ours
            .iter()
            .zip(nums(&t[field]))
            .map(|(a, b)| a / b)
            .collect();
        all_close(
            &format!("{key} {field} ratio"),
            &rel,
            &vec![1.0; rel.len()],
            0.02,
        );
    }
    let fc = fit.forecast(12, 0.05);
    let scale = if log_scale { 1.0 } else { 100.0 };
    all_close(
        &format!("{key} forecast"),
        &fc.mean,
        &nums(&t["forecast_mean"]),
        1e-3 * scale,
    );
    all_close(
        &format!("{key} forecast se"),
        &fc.se,
        &nums(&t["forecast_se"]),
        1e-3 * scale,
    );
    all_close(
        &format!("{key} lower"),
        &fc.lower,
        &nums(&t["forecast_lower"]),
        2e-3 * scale,
    );
    for (i, lags) in [10, 20].into_iter().enumerate() {
        let lb = ljung_box(&fit.residuals, lags, 0).unwrap();
        close(
            &format!("{key} Q({lags})"),
            lb.stat,
            nums(&t["ljung_box_stat"])[i],
            0.05,
        );
        close(
            &format!("{key} p({lags})"),
            lb.pvalue,
            nums(&t["ljung_box_pvalue"])[i],
            5e-3,
        );
    }
}

#[test]
fn airline_model_matches_statsmodels() {
    let y: Vec<f64> = series(Named::AirPassengers)
        .iter()
        .map(|v| v.ln())
        .collect();
    let fit = Arima::new(Order::new(0, 1, 1).seasonal(0, 1, 1, 12))
        .fit(&y)
        .unwrap();
    check_fit("airline", &fit, true);
}

#[test]
fn sunspots_arima_212_matches_statsmodels() {
    let fit = Arima::new(Order::new(2, 1, 2))
        .fit(&series(Named::Sunspots))
        .unwrap();
    check_fit("sunspots_212", &fit, false);
}

/// The order search over p, q in 0..=3 with d = 1 on sunspots. Fourteen of the sixteen
/// maxima agree with statsmodels within 1e-2; on (0,1,3) ours is higher (statsmodels'
/// start is non-invertible, it falls back to zeros and stops at a lower local maximum);
/// on (3,1,3) ours stops at a local maximum 1.3 below statsmodels'. Neither changes the
/// choices: (2,1,3) by AIC, (2,1,2) by BIC.
#[test]
fn order_search_matches_statsmodels() {
    let e = expected();
    let rows = order_search(&series(Named::Sunspots), 1, Trend::None, 3, 3).unwrap();
    let table = e["search_sunspots"].as_array().unwrap();
    assert_eq!(rows.len(), table.len());
    for (r, t) in rows.iter().zip(table) {
        assert_eq!(
            (r.p as u64, r.q as u64),
            (t["p"].as_u64().unwrap(), t["q"].as_u64().unwrap())
        );
        let diff = r.llf - num(&t["llf"]);
        match (r.p, r.q) {
            (0, 3) => assert!(diff > 1.0, "(0,1,3): ours should be higher, diff {diff}"),
            (3, 3) => assert!((-1.5..-1.0).contains(&diff), "(3,1,3): diff {diff}"),
            _ => close(
                &format!("({},1,{}) llf", r.p, r.q),
                r.llf,
                num(&t["llf"]),
                1e-2,
            ),
        }
    }
    let a = best_by(&rows, |r| r.aic);
    let b = best_by(&rows, |r| r.bic);
    assert_eq!((a.p, a.q), (2, 3));
    assert_eq!((b.p, b.q), (2, 2));
}

/// ARMA(2,2) with a constant on the sunspot levels ($d = 0$). Everything matches as the
/// models without a trend do, but the constant only to a hundredth of its standard error
/// (0.03 of 2.9): statsmodels' constant sits at the sample mean it starts from, ours
/// moves off it to a likelihood that is higher, by about 1e-4. Along so flat a direction
/// that is a difference of where the optimisers stop, not of the model.
#[test]
fn sunspots_arma_22_with_a_constant_matches_statsmodels() {
    let sun = series(Named::Sunspots);
    let fit = Arima::new(Order::new(2, 0, 2))
        .with_trend(Trend::Const)
        .fit(&sun)
        .unwrap();
    check_fit("sunspots_202c", &fit, false);
    let theirs = &expected()["sunspots_202c"];
    assert!(
        fit.llf > num(&theirs["llf"]),
        "ours {} is not higher",
        fit.llf
    );
    let mean = sun.iter().sum::<f64>() / sun.len() as f64;
    let (ours_off, theirs_off) = (
        (fit.params[0] - mean).abs(),
        (num(&theirs["params"][0]) - mean).abs(),
    );
    assert!(
        theirs_off < 0.01 && ours_off > 0.01,
        "constant off the sample mean: ours {ours_off}, statsmodels {theirs_off}"
    );
}

/// ARIMA(2,1,2) with a drift on sunspots ($d = 1$).
#[test]
fn sunspots_arima_212_with_a_drift_matches_statsmodels() {
    let fit = Arima::new(Order::new(2, 1, 2))
        .with_trend(Trend::Drift)
        .fit(&series(Named::Sunspots))
        .unwrap();
    check_fit("sunspots_212t", &fit, false);
}

/// The order search over p, q in 0..=3 with $d = 0$ and a constant on sunspots:
/// every maximum, and the constant, against statsmodels'.
#[test]
fn order_search_with_a_constant_matches_statsmodels() {
    let e = expected();
    let sun = series(Named::Sunspots);
    let rows = order_search(&sun, 0, Trend::Const, 3, 3).unwrap();
    let table = e["search_sunspots_c"].as_array().unwrap();
    assert_eq!(rows.len(), table.len());
    for (r, t) in rows.iter().zip(table) {
        assert_eq!(
            (r.p as u64, r.q as u64),
            (t["p"].as_u64().unwrap(), t["q"].as_u64().unwrap())
        );
        close(
            &format!("({},0,{}) llf", r.p, r.q),
            r.llf,
            num(&t["llf"]),
            1e-2,
        );
    }
    let theirs = |key: &str| {
        let best = table
            .iter()
            .min_by(|a, b| num(&a[key]).total_cmp(&num(&b[key])))
            .unwrap();
        (
            best["p"].as_u64().unwrap() as usize,
            best["q"].as_u64().unwrap() as usize,
        )
    };
    let a = best_by(&rows, |r| r.aic);
    let b = best_by(&rows, |r| r.bic);
    assert_eq!((a.p, a.q), theirs("aic"));
    assert_eq!((b.p, b.q), theirs("bic"));
}

/// A trend the differences remove, or one they leave but the model lacks, is an error
/// that says which trend fits, not a silently different model.
#[test]
fn a_trend_that_does_not_suit_the_differences_is_a_clear_error() {
    let sun = series(Named::Sunspots);
    let err = Arima::new(Order::new(1, 1, 0))
        .with_trend(Trend::Const)
        .fit(&sun)
        .unwrap_err()
        .to_string();
    assert!(err.contains("use a drift"), "{err}");
    let err = Arima::new(Order::new(1, 0, 0))
        .with_trend(Trend::Drift)
        .fit(&sun)
        .unwrap_err()
        .to_string();
    assert!(err.contains("use a constant"), "{err}");
    let err = Arima::new(Order::new(0, 1, 1).seasonal(0, 1, 1, 12))
        .with_trend(Trend::Drift)
        .fit(&sun)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported"), "{err}");
}

fn fact(name: &str) -> f64 {
    let r = dlbook::experiments::quick("tsa_arima", &DataDir::resolve(None)).unwrap();
    r.facts[name]
        .value
        .number()
        .unwrap_or_else(|| panic!("fact {name} is not a number"))
}

#[test]
fn levels_look_nonstationary_and_differences_stationary() {
    for s in ["air_passengers", "co2", "sunspots"] {
        // ADF cannot reject a unit root at 5 %; KPSS rejects stationarity at 5 %.
        assert!(fact(&format!("adf_p_{s}_levels")) > 0.05, "{s}");
        assert!(fact(&format!("kpss_p_{s}_levels")) < 0.05, "{s}");
    }
    for key in [
        "air_passengers_log_differenced",
        "co2_differenced",
        "sunspots_differenced",
    ] {
        assert!(fact(&format!("kpss_p_{key}")) > 0.05, "{key}");
    }
    assert!(
        fact("adf_p_co2_differenced") < 0.01 && fact("adf_p_sunspots_differenced") < 0.01
    );
}

#[test]
fn the_log_alone_does_not_remove_the_unit_root() {
    assert!(fact("adf_p_air_passengers_log") > 0.1);
    assert!(fact("adf_p_air_passengers_log") < fact("adf_p_air_passengers_levels"));
}

#[test]
fn sunspots_pacf_leaves_the_band_at_several_lags() {
    assert!(fact("sunspots_pacf_beyond_band") >= 2.0);
}

#[test]
fn airline_residuals_pass_ljung_box() {
    assert!(fact("airline_ljung_box_p24") > 0.05);
}

#[test]
fn aic_picks_a_larger_model_than_bic() {
    let aic = (fact("search_aic_p"), fact("search_aic_q"));
    let bic = (fact("search_bic_p"), fact("search_bic_q"));
    assert_ne!(aic, bic);
    assert!(aic.0 + aic.1 > bic.0 + bic.1);
}

/// On the sunspot tail, AR(2) with a constant on the levels forecasts better than the
/// differenced ARIMA(2,1,2): the differenced model has no mean to return to.
#[test]
fn ar2_with_a_constant_forecasts_sunspots_better_than_the_differenced_model() {
    assert!(fact("arima2_mase_sunspots") < fact("arima_mase_sunspots"));
}

/// On the levels with a constant, BIC picks AR(2): two coefficients for the cycle.
#[test]
fn bic_picks_ar2_on_the_sunspot_levels() {
    assert_eq!((fact("search_c_bic_p"), fact("search_c_bic_q")), (2.0, 0.0));
}

#[test]
fn arima_beats_the_seasonal_naive_forecast_on_every_tail() {
    for s in ["air_passengers", "co2", "sunspots"] {
        assert!(
            fact(&format!("arima_mase_{s}")) < fact(&format!("snaive_mase_{s}")),
            "{s}"
        );
    }
}

/// CSS and exact ML land close on the airline model (within one ML standard error) but
/// not on the same point: CSS ignores what the first thirteen differences say.
#[test]
fn css_lands_near_the_exact_ml_estimate() {
    let y: Vec<f64> = series(Named::AirPassengers)
        .iter()
        .map(|v| v.ln())
        .collect();
    let order = Order::new(0, 1, 1).seasonal(0, 1, 1, 12);
    let ml = Arima::new(order).fit(&y).unwrap();
    let css = Arima::new(order).css().fit(&y).unwrap();
    for i in 0..2 {
        let gap = (ml.params[i] - css.params[i]).abs();
        assert!(gap > 1e-3 && gap < ml.bse[i], "{i}: gap {gap}");
    }
}

/// The MASE of every row of the quick run's forecasting table for `series`, by method.
fn forecast_mase(series: &str) -> Vec<(String, f64)> {
    let r = dlbook::experiments::quick("tsa_arima", &DataDir::resolve(None)).unwrap();
    let t = r.table("forecast").expect("forecast table");
    t.rows
        .iter()
        .filter(|row| matches!(&row[0], dlbook::report::Value::Text(s) if s == series))
        .map(|row| {
            let dlbook::report::Value::Text(m) = &row[1] else {
                panic!("method names are text")
            };
            (m.clone(), row[4].number().expect("MASE is a number"))
        })
        .collect()
}

/// On the two monthly series a fixed airline model of two parameters forecasts the tail
/// better than every one of chapter 9's networks (by their mean over seeds); on
/// sunspots, whose cycle is not a fixed season, some network beats every ARIMA row.
#[test]
fn arima_beats_every_network_on_the_monthly_series_but_not_on_sunspots() {
    let nets = |rows: &[(String, f64)]| -> Vec<f64> {
        rows.iter()
            .filter(|(m, _)| m.starts_with("LSTM") || m.starts_with("GRU"))
            .map(|(_, v)| *v)
            .collect()
    };
    // The best ARIMA row.
    let arima = |rows: &[(String, f64)]| -> f64 {
        rows.iter()
            .filter(|(m, _)| m.starts_with("ARIMA"))
            .map(|(_, v)| *v)
            .reduce(f64::min)
            .expect("an ARIMA row")
    };
    for s in ["air_passengers", "co2"] {
        let rows = forecast_mase(s);
        let n = nets(&rows);
        assert!(
            n.len() >= 4,
            "{s}: chapter 9's network rows are in the table"
        );
        assert!(n.iter().all(|&v| arima(&rows) < v), "{s}: {rows:?}");
    }
    let rows = forecast_mase("sunspots");
    assert!(nets(&rows).iter().any(|&v| v < arima(&rows)), "{rows:?}");
}
