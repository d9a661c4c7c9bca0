//! Experiment `forecast_baselines`: the baselines a forecaster must beat, fitted on the
//! training part of three real series and scored on their held-out tails.
//!
//! For each series (AirPassengers, Mauna Loa CO2, sunspots) the last $H$ values are held
//! out; every method is fitted on the values before them and forecasts all $H$ steps at
//! once from the end of the training part. The methods: naive, seasonal naive, drift,
//! and a ridge linear autoregression on the scaled series by both strategies
//! (recursive and direct). The autoregression's window $p$ and penalty $\lambda$ are
//! chosen on a validation tail: the last $H$ values of the training part, forecast by
//! a model fitted on the values before them. The held-out tail plays no part in any
//! choice. For AirPassengers, scaled through a log, the same autoregression without the
//! log is an ablation row.
//!
//! Every method here is deterministic (least squares has no seed), so the table has
//! one number per cell; a method with randomness would report mean ± std over seeds.
//!
//! The report holds a table per series (method, $p$, $\lambda$, MAE, RMSE, MASE), a
//! table of MASE across series, a figure per series (the end of the training part, the
//! tail, and each method's forecast), and the mean level and within-year range of
//! AirPassengers in the first and last training years, the range raw and on the log
//! scale.

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::seq::{
    choose_by_validation, evaluate, linear_ar, load, split_tail, Drift, Evaluation,
    Named, Naive, SeasonalNaive, Strategy, TimeSeries, Transform,
};

/// Experiment `forecast_baselines`, registered in [`super::all`].
pub struct ForecastBaselines;

impl Experiment for ForecastBaselines {
    const NAME: &'static str = "forecast_baselines";
    const CHAPTER: &'static str = "ch09";
    const TITLE: &'static str =
        "Forecasting baselines on AirPassengers, Mauna Loa CO2 and sunspots";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// One series and how it is forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesConfig {
    /// Which series.
    pub series: Named,
    /// The held-out tail $H$ (also the validation tail).
    pub horizon: usize,
    /// The period $m$ of the seasonal naive forecast and the MASE scale.
    pub period: usize,
    /// The transform before standardising, for the autoregression.
    pub transform: Transform,
    /// The windows $p$ the autoregression chooses from.
    pub windows: Vec<usize>,
    /// Training values drawn before the tail in the figure.
    pub plot_history: usize,
}

impl SeriesConfig {
    /// The book's settings for `series` ([`Named::horizon`], [`Named::period`],
    /// [`Named::transform`]), with windows of one, two and three periods.
    pub fn of(series: Named) -> Self {
        let m = series.period();
        SeriesConfig {
            series,
            horizon: series.horizon(),
            period: m,
            transform: series.transform(),
            windows: vec![m, 2 * m, 3 * m],
            plot_history: 2 * series.horizon(),
        }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The series.
    pub series: Vec<SeriesConfig>,
    /// The ridge penalties $\lambda$ the autoregression chooses from (0: least squares).
    pub lambdas: Vec<f64>,
}

impl Preset for Config {
    /// The book's configuration (seconds: the quick preset is the same).
    fn full() -> Self {
        Config {
            series: Named::ALL.into_iter().map(SeriesConfig::of).collect(),
            lambdas: vec![0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        }
    }
}

/// One row of a series' table: a method, its chosen hyper-parameters, its evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The method's name as the table shows it.
    pub method: String,
    /// The chosen window $p$ and penalty $\lambda$ (for the autoregression).
    pub chosen: Option<(usize, f64)>,
    /// The forecast of the tail and its errors.
    pub eval: Evaluation,
    /// Whether the figure draws it (ablation rows are left out).
    pub plotted: bool,
}

// ANCHOR: methods
/// Every method on one series: fitted on the training part, scored on the tail.
pub fn evaluate_series(cfg: &Config, s: &SeriesConfig, ts: &TimeSeries) -> Result<Vec<Row>> {
    let (train, test) = split_tail(&ts.values, s.horizon)?;
    let (m, h) = (s.period, s.horizon);
    let row = |method: &str, eval| Row {
        method: method.into(),
        chosen: None,
        eval,
        plotted: true,
    };
    let mut rows = vec![
        row("naive", evaluate(&Naive, train, test, m)?),
        row("seasonal naive", evaluate(&SeasonalNaive { period: m }, train, test, m)?),
        row("drift", evaluate(&Drift, train, test, m)?),
    ];
    let mut transforms = vec![(s.transform, "")];
    if s.transform == Transform::Log {
        transforms.push((Transform::Identity, ", no log"));
    }
    let grid: Vec<(usize, f64)> = s
        .windows
        .iter()
        .flat_map(|&p| cfg.lambdas.iter().map(move |&l| (p, l)))
        .collect();
    for (transform, suffix) in transforms {
        for (strategy, name) in [
            (Strategy::Recursive, "recursive"),
            (Strategy::Direct { horizon: h }, "direct"),
        ] {
            let build = |&(p, lambda): &(usize, f64)| linear_ar(p, lambda, strategy, transform);
            // The validation tail is the last h values of the training part.
            let (best, _) = choose_by_validation(&grid, build, train, h)?;
            rows.push(Row {
                method: format!("linear AR, {name}{suffix}"),
                chosen: Some(best),
                eval: evaluate(&build(&best), train, test, m)?,
                plotted: suffix.is_empty(),
            });
        }
    }
    Ok(rows)
}
// ANCHOR_END: methods

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let bar = progress::bar(cfg.series.len() as u64, "forecast baselines");
    let mut all = vec![];
    for s in &cfg.series {
        let ts = load(dir, s.series)?;
        r.data.push(data_ref(s.series.file().0));
        let rows = evaluate_series(cfg, s, &ts)
            .with_context(|| format!("series {}", s.series.name()))?;
        r.tables.push(series_table(s, &ts, &rows));
        r.figures.push(forecast_figure(s, &ts, &rows));
        if s.series == Named::AirPassengers {
            range_facts(s, &ts, r)?;
        }
        all.push((s, rows));
        bar.inc(1);
    }
    bar.finish_and_clear();
    r.tables.push(mase_table(&all));
    Ok(())
}

fn series_table(s: &SeriesConfig, ts: &TimeSeries, rows: &[Row]) -> Table {
    let n = ts.values.len();
    let name = s.series.name();
    Table {
        name: name.into(),
        caption: format!(
            "{name}: the last {} values ({} to {}) forecast from the {} before them; MAE \
             and RMSE in {}, MASE scaled by the seasonal naive error of period {} on the training part. \
             The autoregression's window p and penalty λ chosen on the last {} training \
             values.",
            s.horizon,
            ts.index[n - s.horizon],
            ts.index[n - 1],
            n - s.horizon,
            s.series.unit(),
            s.period,
            s.horizon
        ),
        columns: vec![
            col("method", Format::Int),
            col("window p", Format::Int),
            col("λ", Format::Int),
            col("MAE", Format::Fixed(2)),
            col("RMSE", Format::Fixed(2)),
            col("MASE", Format::Fixed(3)),
        ],
        rows: rows
            .iter()
            .map(|row| {
                let (p, l) = match row.chosen {
                    // As text: 0 is plain least squares, not "0e0".
                    Some((p, 0.0)) => (Value::Num(p as f64), Value::from("0")),
                    Some((p, l)) => (Value::Num(p as f64), Value::from(format!("{l:e}"))),
                    None => (Value::from("–"), Value::from("–")),
                };
                vec![
                    Value::from(row.method.as_str()),
                    p,
                    l,
                    Value::Num(row.eval.mae),
                    Value::Num(row.eval.rmse),
                    Value::Num(row.eval.mase),
                ]
            })
            .collect(),
    }
}

fn mase_table(all: &[(&SeriesConfig, Vec<Row>)]) -> Table {
    let mut columns = vec![col("method", Format::Int)];
    columns.extend(
        all.iter()
            .map(|(s, _)| col(s.series.name(), Format::Fixed(3))),
    );
    // Methods in the order of the first series; a method a series lacks shows "–".
    let methods: Vec<&str> = all[0].1.iter().map(|r| r.method.as_str()).collect();
    let mut extra: Vec<&str> = vec![];
    for (_, rows) in all {
        for r in rows {
            if !methods.contains(&r.method.as_str()) && !extra.contains(&r.method.as_str()) {
                extra.push(&r.method);
            }
        }
    }
    let rows = methods
        .iter()
        .chain(&extra)
        .map(|&method| {
            let mut row = vec![Value::from(method)];
            row.extend(all.iter().map(|(_, rows)| {
                rows.iter()
                    .find(|r| r.method == method)
                    .map_or(Value::from("–"), |r| Value::Num(r.eval.mase))
            }));
            row
        })
        .collect();
    Table {
        name: "mase".into(),
        caption: "MASE of every method on every series (below 1: smaller errors on the \
                  tail than the seasonal naive forecast makes one season ahead on the \
                  training part)."
            .into(),
        columns,
        rows,
    }
}

fn forecast_figure(s: &SeriesConfig, ts: &TimeSeries, rows: &[Row]) -> Figure {
    let years = ts.years();
    let t = ts.values.len() - s.horizon;
    let from = t.saturating_sub(s.plot_history);
    let line = |name: &str, x: &[f64], y: &[f64]| Series {
        name: name.into(),
        x: x.to_vec(),
        y: y.to_vec(),
        band: None,
    };
    // The tail and every forecast start at the last training value, so that each line
    // leaves from the forecast origin.
    let origin = ts.values[t - 1];
    let from_origin = |y: &[f64]| [&[origin][..], y].concat();
    let tail_x = &years[t - 1..];
    let mut series = vec![
        line("training part", &years[from..t], &ts.values[from..t]),
        line("held-out tail", tail_x, &ts.values[t - 1..]),
    ];
    series.extend(
        rows.iter()
            .filter(|r| r.plotted)
            .map(|r| line(&r.method, tail_x, &from_origin(&r.eval.forecast))),
    );
    Figure {
        name: format!("forecast_{}", s.series.name()),
        title: format!(
            "{}: the last {} values and their forecasts",
            s.series.name(),
            s.horizon
        ),
        plot: Plot::Lines {
            x_label: "year".into(),
            y_label: s.series.unit().into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    }
}

/// The mean level and the within-year range (largest minus smallest month) of the
/// first and the last full year of the training part, and the range on the log scale:
/// multiplicative seasonality shows as a raw range that grows with the level and a log
/// range that grows much less.
fn range_facts(s: &SeriesConfig, ts: &TimeSeries, r: &mut Report) -> Result<()> {
    let (train, _) = split_tail(&ts.values, s.horizon)?;
    let m = s.series.per_year();
    let range = |y: &[f64]| {
        let max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = y.iter().copied().fold(f64::INFINITY, f64::min);
        max - min
    };
    let years = train.len() / m;
    let first = &train[..m];
    let last = &train[(years - 1) * m..years * m];
    let ln = |y: &[f64]| y.iter().map(|v| v.ln()).collect::<Vec<_>>();
    let mean = |y: &[f64]| y.iter().sum::<f64>() / y.len() as f64;
    r.fact("air_level_first", mean(first), Format::Int);
    r.fact("air_level_last", mean(last), Format::Int);
    r.fact("air_range_first", range(first), Format::Int);
    r.fact("air_range_last", range(last), Format::Int);
    r.fact("air_log_range_first", range(&ln(first)), Format::Fixed(2));
    r.fact("air_log_range_last", range(&ln(last)), Format::Fixed(2));
    Ok(())
}
