//! Experiment `forecast_lstm`: recurrent forecasters (an LSTM and a GRU) on the three
//! series of `forecast_baselines`, by both strategies, against the baselines.
//!
//! Same series, same held-out tails, same scaling (fitted on the training part only,
//! through a log for AirPassengers) as [`forecast_baselines`].
//! Each network reads a window of two periods and predicts the change from the window's
//! last value ([`Recurrent`]): one step (recursive) or the whole tail (direct). It is
//! trained by the book's loop with Adam, gradient clipping and early stopping on the last
//! windows of the training part; every seed fixes the initialization and the batch order,
//! and each cell of the table is the mean ± std over the seeds. The baselines (naive,
//! seasonal naive, and the ridge autoregression with its window and penalty chosen on
//! the validation tail) are recomputed here by `forecast_baselines`' own code, so the
//! rows side by side come from the same split.
//!
//! An ablation row per strategy trains the LSTM on levels instead of changes
//! (`relative = false`).
//!
//! Why an experiment of its own rather than more rows in `forecast_baselines`: the
//! baselines are deterministic and take a second, the networks take minutes and carry
//! seeds; kept apart, the baselines' tests stay instant and their committed results do
//! not move when a network's training changes.

use anyhow::{Context, Result};
use serde::Serialize;

use super::common::over_seeds;
use super::forecast_baselines::{self, evaluate_series, SeriesConfig};
use super::{Experiment, Preset};
use crate::data::{data_ref, DataDir};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::seq::{
    load, mae, mase, rmse, seasonal_naive_mae, split_tail, Cell, Evaluation, Forecast,
    Forecaster, Named, Recurrent, Strategy, TimeSeries,
};

/// Experiment `forecast_lstm`, registered in [`super::all`].
pub struct ForecastLstm;

impl Experiment for ForecastLstm {
    const NAME: &'static str = "forecast_lstm";
    const CHAPTER: &'static str = "ch09";
    const TITLE: &'static str =
        "LSTM and GRU forecasters on AirPassengers, Mauna Loa CO2 and sunspots, against the baselines";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The series, with their tails and periods (those of `forecast_baselines`).
    pub series: Vec<SeriesConfig>,
    /// The networks' input window, in periods of the series.
    pub window_periods: usize,
    /// The recurrent layers compared.
    pub cells: Vec<Cell>,
    /// The model and its training (its `cell`, `relative` and `seed` are set per run).
    pub model: Recurrent,
    /// Also train the LSTM on levels instead of changes (the ablation rows).
    pub ablate_relative: bool,
    /// One training run per seed and model.
    pub seeds: Vec<u64>,
}

impl Preset for Config {
    /// The book's configuration: the three series, LSTM and GRU of 32 units, three
    /// seeds.
    fn full() -> Self {
        Config {
            series: Named::ALL.into_iter().map(SeriesConfig::of).collect(),
            window_periods: 2,
            cells: vec![Cell::Lstm, Cell::Gru],
            model: Recurrent {
                cell: Cell::Lstm,
                hidden: 32,
                relative: true,
                lr: 3e-3,
                n_epochs: 300,
                batch_size: 16,
                val_fraction: 0.2,
                patience: 30,
                clip_norm: 1.0,
                seed: 0,
            },
            ablate_relative: true,
            seeds: vec![0, 1, 2],
        }
    }

    /// The test configuration: AirPassengers only, small networks, a few epochs, one
    /// seed.
    fn quick() -> Self {
        let full = Self::full();
        Config {
            series: vec![SeriesConfig::of(Named::AirPassengers)],
            model: Recurrent {
                hidden: 8,
                n_epochs: 6,
                patience: 3,
                ..full.model.clone()
            },
            seeds: vec![0],
            ..full
        }
    }
}

/// One row of a series' table: a method, its window, its evaluation per seed (one for a
/// deterministic method).
#[derive(Clone, Debug)]
pub struct Row {
    /// The method's name as the tables show it.
    pub method: String,
    /// The input window $p$.
    pub window: usize,
    /// One evaluation per seed (one in all for a baseline).
    pub evals: Vec<Evaluation>,
    /// The epoch whose weights were kept, per seed (networks only).
    pub best_epochs: Vec<f64>,
    /// Whether the figure draws it.
    pub plotted: bool,
}

impl Row {
    fn metric(&self, f: impl Fn(&Evaluation) -> f64) -> Value {
        let v: Vec<f64> = self.evals.iter().map(f).collect();
        if v.len() == 1 {
            Value::Num(v[0])
        } else {
            Value::Seeds(v)
        }
    }
}

fn strategies(h: usize) -> [(Strategy, &'static str); 2] {
    [
        (Strategy::Recursive, "recursive"),
        (Strategy::Direct { horizon: h }, "direct"),
    ]
}

// ANCHOR: neural_rows
/// The networks on one series, one run per seed: fitted on the training part, scored
/// on the tail.
pub fn neural_rows(cfg: &Config, s: &SeriesConfig, ts: &TimeSeries) -> Result<Vec<Row>> {
    let (train, test) = split_tail(&ts.values, s.horizon)?;
    let p = cfg.window_periods * s.period;
    let mut variants: Vec<(Cell, bool, &str)> =
        cfg.cells.iter().map(|&c| (c, cfg.model.relative, "")).collect();
    if cfg.ablate_relative {
        variants.push((Cell::Lstm, !cfg.model.relative, ", levels"));
    }
    let mut rows = vec![];
    for (cell, relative, suffix) in variants {
        for (strategy, name) in strategies(s.horizon) {
            let method = format!("{}, {name}{suffix}", cell.name());
            let runs = over_seeds(
                &format!("forecast_lstm: {} {method}", s.series.name()),
                &cfg.seeds,
                |seed| -> Result<(Evaluation, f64)> {
                    let model = Recurrent {
                        cell,
                        relative,
                        seed,
                        ..cfg.model.clone()
                    };
                    let f = model.forecaster(p, strategy, s.transform);
                    let fitted = f.fit(train)?;
                    let best = fitted.fitted.fitted.summary.best_epoch.unwrap_or(0) as f64;
                    let eval = evaluate_fitted(&fitted, train, test, s.period)?;
                    Ok((eval, best))
                },
            )
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{method} on {}", s.series.name()))?;
            let (evals, best_epochs) = runs.into_iter().unzip();
            rows.push(Row {
                method,
                window: p,
                evals,
                best_epochs,
                plotted: suffix.is_empty(),
            });
        }
    }
    Ok(rows)
}
// ANCHOR_END: neural_rows

/// What [`evaluate`](crate::seq::evaluate) computes, for a forecaster already fitted on `train` (so that its
/// training summary can be read too).
fn evaluate_fitted(
    fitted: &impl Forecast,
    train: &[f64],
    test: &[f64],
    period: usize,
) -> Result<Evaluation> {
    let forecast = fitted.forecast(train, test.len())?;
    let scale = seasonal_naive_mae(train, period)?;
    Ok(Evaluation {
        mae: mae(test, &forecast),
        rmse: rmse(test, &forecast),
        mase: mase(test, &forecast, scale),
        forecast,
    })
}

/// The baselines the networks are compared with, from `forecast_baselines`: naive,
/// seasonal naive and the linear autoregression by both strategies.
fn baseline_rows(s: &SeriesConfig, ts: &TimeSeries) -> Result<Vec<Row>> {
    let keep = [
        "naive",
        "seasonal naive",
        "linear AR, recursive",
        "linear AR, direct",
    ];
    Ok(evaluate_series(&forecast_baselines::Config::full(), s, ts)?
        .into_iter()
        .filter(|r| keep.contains(&r.method.as_str()))
        .map(|r| Row {
            plotted: r.method != "naive",
            window: r.chosen.map_or(0, |(p, _)| p),
            method: r.method,
            evals: vec![r.eval],
            best_epochs: vec![],
        })
        .collect())
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let mut all = vec![];
    for s in &cfg.series {
        let ts = load(dir, s.series)?;
        r.data.push(data_ref(s.series.file().0));
        let mut rows = baseline_rows(s, &ts)?;
        rows.extend(neural_rows(cfg, s, &ts)?);
        r.tables.push(series_table(cfg, s, &ts, &rows));
        r.figures.push(forecast_figure(s, &ts, &rows));
        all.push((s, rows));
    }
    r.tables.push(mase_table(&all));
    Ok(())
}

fn series_table(cfg: &Config, s: &SeriesConfig, ts: &TimeSeries, rows: &[Row]) -> Table {
    let n = ts.values.len();
    let name = s.series.name();
    Table {
        name: name.into(),
        caption: format!(
            "{name}: the last {} values ({} to {}) forecast from the {} before them; MAE \
             and RMSE in {}, MASE scaled by the seasonal naive error of period {} on the \
             training part. Networks: mean ± std over seeds {:?}; the epoch kept by early \
             stopping on the last {} % of the training windows.",
            s.horizon,
            ts.index[n - s.horizon],
            ts.index[n - 1],
            n - s.horizon,
            s.series.unit(),
            s.period,
            cfg.seeds,
            (100.0 * cfg.model.val_fraction).round()
        ),
        columns: vec![
            col("method", Format::Int),
            col("window p", Format::Int),
            col("MAE", Format::Fixed(2)),
            col("RMSE", Format::Fixed(2)),
            col("MASE", Format::Fixed(3)),
            col("epoch kept", Format::Fixed(0)),
        ],
        rows: rows
            .iter()
            .map(|row| {
                vec![
                    Value::from(row.method.as_str()),
                    if row.window == 0 {
                        Value::from("–")
                    } else {
                        Value::Num(row.window as f64)
                    },
                    row.metric(|e| e.mae),
                    row.metric(|e| e.rmse),
                    row.metric(|e| e.mase),
                    if row.best_epochs.is_empty() {
                        Value::from("–")
                    } else {
                        Value::Seeds(row.best_epochs.clone())
                    },
                ]
            })
            .collect(),
    }
}

fn mase_table(all: &[(&SeriesConfig, Vec<Row>)]) -> Table {
    let mut columns = vec![col("method", Format::Int)];
    columns.extend(all.iter().map(|(s, _)| col(s.series.name(), Format::Fixed(3))));
    let rows = all[0]
        .1
        .iter()
        .map(|first| {
            let mut row = vec![Value::from(first.method.as_str())];
            row.extend(all.iter().map(|(_, rows)| {
                rows.iter()
                    .find(|r| r.method == first.method)
                    .map_or(Value::from("–"), |r| r.metric(|e| e.mase))
            }));
            row
        })
        .collect();
    Table {
        name: "mase".into(),
        caption: "MASE of every method on every series (networks: mean ± std over \
                  seeds; below 1: smaller errors on the tail than the seasonal naive \
                  forecast makes one season ahead on the training part)."
            .into(),
        columns,
        rows,
    }
}

fn forecast_figure(s: &SeriesConfig, ts: &TimeSeries, rows: &[Row]) -> Figure {
    let years = ts.years();
    let t = ts.values.len() - s.horizon;
    let from = t.saturating_sub(s.plot_history);
    let origin = ts.values[t - 1];
    let tail_x = years[t - 1..].to_vec();
    let mut series = vec![
        Series {
            name: "training part".into(),
            x: years[from..t].to_vec(),
            y: ts.values[from..t].to_vec(),
            band: None,
        },
        Series {
            name: "held-out tail".into(),
            x: tail_x.clone(),
            y: ts.values[t - 1..].to_vec(),
            band: None,
        },
    ];
    // Each forecast leaves from the last training value; a network's line is the mean
    // over the seeds, its band their standard deviation.
    for row in rows.iter().filter(|r| r.plotted) {
        let (mut y, mut band) = (vec![origin], vec![0.0]);
        for h in 0..s.horizon {
            let v: Vec<f64> = row.evals.iter().map(|e| e.forecast[h]).collect();
            let (m, sd) = Value::mean_std(&v);
            y.push(m);
            band.push(sd);
        }
        series.push(Series {
            name: row.method.clone(),
            x: tail_x.clone(),
            y,
            band: (row.evals.len() > 1).then_some(band),
        });
    }
    Figure {
        name: format!("forecast_{}", s.series.name()),
        title: format!(
            "{}: the last {} values, the baselines' forecasts and the networks' (mean ± std \
             over seeds)",
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
