//! Experiment `tsa_arima`: stationarity tests, the sunspots ACF and PACF, the airline
//! model, the sunspots order searches (differenced, and on the levels with a constant),
//! and ARIMA against the naive baselines on the held-out tails of chapter 9's three
//! series.
//!
//! Everything is deterministic (tests and maximum likelihood have no seed), so each cell
//! holds one number. The forecasting rows fit on the training part only (the values
//! before the tail of [`Named::horizon`]) and score with chapter 9's metrics, the MASE
//! scaled by the seasonal naive error on the training part. The orders are fixed in
//! advance: the airline model $(0,1,1)\times(0,1,1)_{12}$ on the log for AirPassengers,
//! the same on CO2 without the log, and for sunspots the BIC choices of the two
//! full-series searches: $(2,1,2)$ on the differences and AR(2) with a constant on the
//! levels.

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::seq::{evaluate, load, split_tail, Forecast, Forecaster, Named, Naive, SeasonalNaive};
use crate::tsa::{
    acf, adf, bartlett_band, best_by, kpss, ljung_box, order_search, pacf_durbin_levinson,
    Arima, ArimaFit, Order, Regression, SearchRow, Trend,
};

/// Experiment `tsa_arima`, registered in [`super::all`].
pub struct TsaArima;

impl Experiment for TsaArima {
    const NAME: &'static str = "tsa_arima";
    const CHAPTER: &'static str = "ch12";
    const TITLE: &'static str = "Stationarity, ACF/PACF and ARIMA on AirPassengers, CO2 and sunspots";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Lags of the ACF/PACF figure.
    pub nlags: usize,
    /// Largest $p$ and $q$ of the order search.
    pub max_order: usize,
    /// Steps of the airline forecast figure.
    pub forecast_steps: usize,
}

impl Preset for Config {
    /// The book's configuration (seconds: the quick preset is the same).
    fn full() -> Self {
        Config { nlags: 30, max_order: 3, forecast_steps: 24 }
    }
}

/// A fixed-order ARIMA as a chapter 9 forecaster, optionally on the log scale.
#[derive(Clone, Copy, Debug)]
pub struct ArimaForecaster {
    /// The order.
    pub order: Order,
    /// Its trend.
    pub trend: Trend,
    /// Fit the log of the series and forecast its exponential (the median forecast).
    pub log: bool,
}

/// The fitted [`ArimaForecaster`].
pub struct ArimaForecast {
    fit: ArimaFit,
    log: bool,
    n: usize,
}

impl Forecaster for ArimaForecaster {
    type Fitted = ArimaForecast;

    fn fit(&self, train: &[f64]) -> Result<ArimaForecast> {
        let y: Vec<f64> =
            if self.log { train.iter().map(|v| v.ln()).collect() } else { train.to_vec() };
        let fit = Arima::new(self.order).with_trend(self.trend).fit(&y)?;
        Ok(ArimaForecast { fit, log: self.log, n: train.len() })
    }
}

impl Forecast for ArimaForecast {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        anyhow::ensure!(
            history.len() == self.n,
            "an ARIMA forecasts from the end of the series it was fitted on ({} values), \
             not from {} values",
            self.n,
            history.len()
        );
        let m = self.fit.forecast(horizon, 0.05).mean;
        Ok(if self.log { m.iter().map(|v| v.exp()).collect() } else { m })
    }
}

impl ArimaForecaster {
    /// The row label: `ARIMA(p,d,q)...`, and the trend if there is one.
    pub fn label(&self) -> String {
        match self.trend.name() {
            Some(t) => format!("ARIMA{} with {t}", self.order.label()),
            None => format!("ARIMA{}", self.order.label()),
        }
    }
}

/// The ARIMA models of the forecasting comparison for each series, the first the
/// project's choice: the airline model for the monthly series; for sunspots the BIC
/// choices of the two full-series searches, differenced ARIMA(2,1,2) and, on the levels
/// with a constant, AR(2).
pub fn project_models(named: Named) -> Vec<ArimaForecaster> {
    let airline = Order::new(0, 1, 1).seasonal(0, 1, 1, 12);
    let plain = |order, log| ArimaForecaster { order, trend: Trend::None, log };
    match named {
        Named::AirPassengers => vec![plain(airline, true)],
        Named::Co2 => vec![plain(airline, false)],
        Named::Sunspots => vec![
            plain(Order::new(2, 1, 2), false),
            ArimaForecaster { order: Order::new(2, 0, 0), trend: Trend::Const, log: false },
        ],
    }
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let spin = progress::spinner("time-series analysis");
    let mut rows = vec![];
    let mut all = vec![];
    for named in Named::ALL {
        let ts = load(dir, named)?;
        r.data.push(data_ref(named.file().0));
        let x = ts.values.clone();
        let mut variants = vec![("levels", x.clone())];
        let diff = |v: &[f64]| v.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
        if named == Named::AirPassengers {
            let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
            variants.push(("log", lx.clone()));
            variants.push(("log, differenced", diff(&lx)));
        } else {
            variants.push(("differenced", diff(&x)));
        }
        for (what, v) in &variants {
            let a = adf(v, Regression::Constant, None)?;
            let k = kpss(v, Regression::Constant)?;
            r.fact(&format!("adf_p_{}_{}", named.name(), what.replace(", ", "_")), a.pvalue, Format::Fixed(3));
            r.fact(&format!("kpss_p_{}_{}", named.name(), what.replace(", ", "_")), k.pvalue, Format::Fixed(3));
            rows.push(vec![
                Value::from(named.name()),
                Value::from(*what),
                Value::Num(a.stat),
                Value::Num(a.pvalue),
                Value::Num(a.lags as f64),
                Value::Num(k.stat),
                Value::Num(k.pvalue),
            ]);
        }
        all.push(ts);
    }
    r.tables.push(Table {
        name: "stationarity".into(),
        caption: "ADF (constant, lags by AIC, MacKinnon p-value) and KPSS (level, automatic \
                  lags, p-value interpolated and clamped to [0.01, 0.10]). ADF's null is a \
                  unit root, KPSS's is stationarity."
            .into(),
        columns: vec![
            col("series", Format::Int),
            col("transform", Format::Int),
            col("ADF stat", Format::Fixed(3)),
            col("ADF p", Format::Fixed(3)),
            col("lags", Format::Int),
            col("KPSS stat", Format::Fixed(3)),
            col("KPSS p", Format::Fixed(3)),
        ],
        rows,
    });

    // The ACF and PACF of sunspots with their bands.
    let sun = &all[2].values;
    let rho = acf(sun, cfg.nlags);
    let band = bartlett_band(&rho, sun.len(), 1.96);
    let pacf = pacf_durbin_levinson(sun, cfg.nlags);
    let lags: Vec<f64> = (1..=cfg.nlags).map(|k| k as f64).collect();
    let zero = vec![0.0; cfg.nlags];
    let line = |name: &str, y: Vec<f64>, band: Option<Vec<f64>>| Series {
        name: name.into(),
        x: lags.clone(),
        y,
        band,
    };
    r.figures.push(Figure {
        name: "acf_sunspots".into(),
        title: "Sunspots: ACF with Bartlett's 95 % band, PACF with ±1.96/√n".into(),
        plot: Plot::Lines {
            x_label: "lag (years)".into(),
            y_label: "correlation".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                line("ACF", rho[1..].to_vec(), None),
                line("Bartlett band", zero.clone(), Some(band[1..].to_vec())),
                line("PACF", pacf[1..].to_vec(), None),
                line("PACF band", zero, Some(vec![1.96 / (sun.len() as f64).sqrt(); cfg.nlags])),
            ],
        },
    });
    let beyond = (1..=cfg.nlags).filter(|&k| pacf[k].abs() > 1.96 / (sun.len() as f64).sqrt()).count();
    r.fact("sunspots_pacf_beyond_band", beyond as f64, Format::Int);

    // The airline model on the full log series.
    let air = &all[0];
    let ly: Vec<f64> = air.values.iter().map(|v| v.ln()).collect();
    let airline = Arima::new(Order::new(0, 1, 1).seasonal(0, 1, 1, 12)).fit(&ly)?;
    let css = Arima::new(airline.order).css().fit(&ly)?;
    r.tables.push(Table {
        name: "airline".into(),
        caption: format!(
            "The airline model (0,1,1)x(0,1,1)_12 on log AirPassengers: exact ML \
             (log-likelihood {:.2}, AIC {:.2}, BIC {:.2}, {} observations after \
             differencing), standard errors from the numerical Hessian and from the outer \
             product of gradients, and the conditional-sum-of-squares estimate.",
            airline.llf, airline.aic, airline.bic, airline.nobs_effective
        ),
        columns: vec![
            col("parameter", Format::Int),
            col("ML", Format::Sci(4)),
            col("se (Hessian)", Format::Sci(3)),
            col("se (OPG)", Format::Sci(3)),
            col("CSS", Format::Sci(4)),
        ],
        rows: (0..airline.params.len())
            .map(|i| {
                vec![
                    Value::from(airline.param_names[i].as_str()),
                    Value::Num(airline.params[i]),
                    Value::Num(airline.bse[i]),
                    Value::Num(airline.bse_opg[i]),
                    Value::Num(css.params[i]),
                ]
            })
            .collect(),
    });
    let lb = ljung_box(&airline.residuals, 24, 2)?;
    r.fact("airline_ljung_box_p24", lb.pvalue, Format::Fixed(3));
    let fc = airline.forecast(cfg.forecast_steps, 0.05);
    let years = air.years();
    let n = years.len();
    let step = 1.0 / 12.0;
    let fx: Vec<f64> = (1..=cfg.forecast_steps).map(|h| years[n - 1] + h as f64 * step).collect();
    let from = n - 48;
    r.figures.push(Figure {
        name: "airline_forecast".into(),
        title: "Log AirPassengers: the airline model's forecast with its 95 % interval".into(),
        plot: Plot::Lines {
            x_label: "year".into(),
            y_label: "log passengers (thousands)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series { name: "series".into(), x: years[from..].to_vec(), y: ly[from..].to_vec(), band: None },
                Series {
                    name: "forecast ± 1.96 se".into(),
                    x: fx,
                    y: fc.mean.clone(),
                    band: Some(fc.se.iter().map(|s| 1.959_964 * s).collect()),
                },
            ],
        },
    });

    // The order searches on sunspots: differenced, and on the levels with a constant.
    for (key, d, trend, what) in [
        ("search", 1, Trend::None, "ARIMA(p,1,q) on sunspots"),
        ("search_c", 0, Trend::Const, "ARMA(p,q) with a constant on the sunspot levels"),
    ] {
        let search = order_search(sun, d, trend, cfg.max_order, cfg.max_order)?;
        search_table(r, key, what, &search);
    }

    // ARIMA against the baselines and chapter 9's networks on chapter 9's held-out
    // tails. The networks are not retrained: their rows come from chapter 9's committed
    // results, which must have been made with its current configuration.
    let root = crate::book::find_root(&std::env::current_dir()?)?;
    let networks = super::committed(&root, NETWORKS)?;
    let mut rows = vec![];
    for ts in &all {
        let named = ts.named;
        let (train, test) = split_tail(&ts.values, named.horizon())?;
        let m = named.period();
        let mut methods = vec![
            ("naive".to_string(), evaluate(&Naive, train, test, m)?),
            ("seasonal naive".to_string(), evaluate(&SeasonalNaive { period: m }, train, test, m)?),
        ];
        for (i, model) in project_models(named).iter().enumerate() {
            let e = evaluate(model, train, test, m)?;
            // The project's choice is `arima_mase_*`, the alternatives `arima2_mase_*`..
            let key = if i == 0 { "arima".to_string() } else { format!("arima{}", i + 1) };
            r.fact(&format!("{key}_mase_{}", named.name()), e.mase, Format::Fixed(3));
            methods.push((model.label(), e));
        }
        for (method, e) in &methods {
            let method = method.as_str();
            if method == "seasonal naive" {
                r.fact(&format!("snaive_mase_{}", named.name()), e.mase, Format::Fixed(3));
            }
            if method == "naive" {
                same_tail(&networks, named, e.mae)?;
            }
            rows.push(vec![
                Value::from(named.name()),
                Value::from(method),
                Value::Num(e.mae),
                Value::Num(e.rmse),
                Value::Num(e.mase),
            ]);
        }
        for row in network_rows(&networks, named)? {
            rows.push(row);
        }
    }
    r.tables.push(Table {
        name: "forecast".into(),
        caption: format!(
            "Held-out tails of chapter 9 (24 months; 20 years for sunspots), fitted on the \
             values before them; MASE scaled by the seasonal naive error on the training \
             part. The LSTM and GRU rows are chapter 9's (experiment {NETWORKS}, read from its \
             committed results, not retrained): mean ± std over seeds {:?}, window p as \
             chosen there; \"levels\" is its ablation that predicts the level itself instead \
             of the change.",
            networks.seeds
        ),
        columns: vec![
            col("series", Format::Int),
            col("method", Format::Int),
            col("MAE", Format::Fixed(2)),
            col("RMSE", Format::Fixed(2)),
            col("MASE", Format::Fixed(3)),
        ],
        rows,
    });
    spin.finish_and_clear();
    Ok(())
}

/// The chapter 9 experiment whose network rows join the forecasting table.
pub const NETWORKS: &str = "forecast_lstm";

/// Fails unless chapter 9's naive forecast on `named` scored the MAE ours did: the
/// evidence that both chapters cut the same series at the same tail.
fn same_tail(networks: &Report, named: Named, mae: f64) -> Result<()> {
    let t = networks
        .table(named.name())
        .with_context(|| format!("{NETWORKS} has no table {}", named.name()))?;
    let theirs = t
        .rows
        .iter()
        .find(|r| text(&r[0]) == Some("naive"))
        .and_then(|r| r[2].number())
        .with_context(|| format!("{NETWORKS}'s table {} has no naive row", named.name()))?;
    // Committed results keep a fixed number of significant digits: compare at that.
    anyhow::ensure!(
        crate::report::round_sig(mae) == crate::report::round_sig(theirs),
        "{}: chapter 9's naive MAE is {theirs}, ours {mae}: the series or tails differ",
        named.name()
    );
    Ok(())
}

/// Chapter 9's LSTM and GRU rows for `named` as rows of the forecasting table
/// (series, method, MAE, RMSE, MASE), per-seed values kept.
fn network_rows(networks: &Report, named: Named) -> Result<Vec<Vec<Value>>> {
    let t = networks
        .table(named.name())
        .with_context(|| format!("{NETWORKS} has no table {}", named.name()))?;
    let header: Vec<&str> = t.columns.iter().map(|c| c.header.as_str()).collect();
    anyhow::ensure!(
        header.get(2..5) == Some(&["MAE", "RMSE", "MASE"][..]),
        "{NETWORKS}'s table {} has columns {header:?}, expected MAE, RMSE, MASE third to fifth",
        named.name()
    );
    let rows: Vec<Vec<Value>> = t
        .rows
        .iter()
        .filter(|r| text(&r[0]).is_some_and(|m| m.starts_with("LSTM") || m.starts_with("GRU")))
        .map(|r| {
            let mut row = vec![Value::from(named.name()), r[0].clone()];
            row.extend(r[2..5].iter().cloned());
            row
        })
        .collect();
    anyhow::ensure!(!rows.is_empty(), "{NETWORKS}'s table {} has no network rows", named.name());
    Ok(rows)
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(t) => Some(t),
        _ => None,
    }
}

/// The table `key` of an order search, with the AIC and BIC choices as facts
/// (`{key}_aic_p`, `{key}_aic_q`, `{key}_bic_p`, `{key}_bic_q`).
fn search_table(r: &mut Report, key: &str, what: &str, search: &[SearchRow]) {
    let by_aic = best_by(search, |s| s.aic);
    let by_bic = best_by(search, |s| s.bic);
    r.fact(&format!("{key}_aic_p"), by_aic.p as f64, Format::Int);
    r.fact(&format!("{key}_aic_q"), by_aic.q as f64, Format::Int);
    r.fact(&format!("{key}_bic_p"), by_bic.p as f64, Format::Int);
    r.fact(&format!("{key}_bic_q"), by_bic.q as f64, Format::Int);
    r.tables.push(Table {
        name: key.into(),
        caption: format!("{what} by exact ML: log-likelihood, AIC and BIC."),
        columns: vec![
            col("p", Format::Int),
            col("q", Format::Int),
            col("log-likelihood", Format::Fixed(2)),
            col("AIC", Format::Fixed(2)),
            col("BIC", Format::Fixed(2)),
        ],
        rows: search
            .iter()
            .map(|s| {
                vec![
                    Value::Num(s.p as f64),
                    Value::Num(s.q as f64),
                    Value::Num(s.llf),
                    Value::Num(s.aic),
                    Value::Num(s.bic),
                ]
            })
            .collect(),
    });
}
