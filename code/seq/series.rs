//! The book's three series, read complete, and the chronological split.

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::Transform;
use crate::data::{read_csv_series, DataDir};

/// One of the three series of the forecasting chapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Named {
    /// Box & Jenkins' airline passengers, monthly totals in thousands, 1949-1960
    /// (144 points).
    AirPassengers,
    /// Mauna Loa CO2, monthly means in ppm, 1959-1997 (468 points).
    Co2,
    /// Yearly mean sunspot numbers, 1700-2008 (309 points).
    Sunspots,
}

impl Named {
    /// All three, in the book's order.
    pub const ALL: [Named; 3] = [Named::AirPassengers, Named::Co2, Named::Sunspots];

    /// Short name (`air_passengers`, `co2`, `sunspots`): table rows and figure names.
    pub fn name(self) -> &'static str {
        match self {
            Named::AirPassengers => "air_passengers",
            Named::Co2 => "co2",
            Named::Sunspots => "sunspots",
        }
    }

    /// What is measured, with its unit: the y-axis label of figures.
    pub fn unit(self) -> &'static str {
        match self {
            Named::AirPassengers => "passengers (thousands)",
            Named::Co2 => "CO2 (ppm)",
            Named::Sunspots => "sunspot number",
        }
    }

    /// The catalog file and the column read from it.
    pub fn file(self) -> (&'static str, &'static str) {
        match self {
            Named::AirPassengers => ("airpassengers.csv", "passengers"),
            Named::Co2 => ("co2_monthly.csv", "co2_ppm"),
            Named::Sunspots => ("sunspots_yearly.csv", "sunactivity"),
        }
    }

    /// Observations per year (12 or 1): turns a position into a time in years.
    pub fn per_year(self) -> usize {
        match self {
            Named::AirPassengers | Named::Co2 => 12,
            Named::Sunspots => 1,
        }
    }

    /// The period $m$ of the seasonal naive forecast and of the MASE scale: a year of
    /// months for the monthly series; for sunspots, the solar cycle of about 11 years
    /// (a cycle, not a calendar season: its length varies from about 9 to 14 years, so
    /// the seasonal naive forecast is only a rough copy of the last cycle).
    pub fn period(self) -> usize {
        match self {
            Named::AirPassengers | Named::Co2 => 12,
            Named::Sunspots => 11,
        }
    }

    /// The held-out tail $H$: two years of months; for sunspots 20 years, almost two
    /// cycles.
    pub fn horizon(self) -> usize {
        match self {
            Named::AirPassengers | Named::Co2 => 24,
            Named::Sunspots => 20,
        }
    }

    /// The transform before standardising: log for AirPassengers, whose seasonal swing
    /// grows in proportion to its level (multiplicative seasonality, which the log makes
    /// additive); none for CO2 (a swing of constant size) and sunspots (zeros occur, so
    /// no log).
    pub fn transform(self) -> Transform {
        match self {
            Named::AirPassengers => Transform::Log,
            Named::Co2 | Named::Sunspots => Transform::Identity,
        }
    }
}

/// A complete, regularly spaced series.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeries {
    /// Which series.
    pub named: Named,
    /// The date of each value as the file writes it (`1949-01`, `1700`).
    pub index: Vec<String>,
    /// The values, oldest first.
    pub values: Vec<f64>,
}

impl TimeSeries {
    /// The time of each value in years (`1949-03` is 1949 + 2/12), for figures.
    pub fn years(&self) -> Vec<f64> {
        let start = first_year(&self.index[0]);
        let per = self.named.per_year() as f64;
        (0..self.values.len())
            .map(|i| start + i as f64 / per)
            .collect()
    }
}

/// `1949-03` -> 1949 + 2/12; `1700` -> 1700. Checked when the series is loaded.
fn first_year(date: &str) -> f64 {
    parse_year(date).expect("checked by `load`")
}

fn parse_year(date: &str) -> Option<f64> {
    let mut parts = date.split('-');
    let year: f64 = parts.next()?.parse().ok()?;
    match parts.next() {
        None => Some(year),
        Some(m) => {
            let month: u32 = m.parse().ok().filter(|m| (1..=12).contains(m))?;
            Some(year + f64::from(month - 1) / 12.0)
        }
    }
}

/// Reads `named` from the data folder, checking its checksum and that it has no missing
/// values.
pub fn load(dir: &DataDir, named: Named) -> Result<TimeSeries> {
    let (file, column) = named.file();
    let path = dir.verified(file)?;
    let s = read_csv_series(&path, column)?;
    let values = s
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.with_context(|| {
                format!(
                    "{file}: value {i} ({}) is missing; forecasting needs a complete series",
                    s.index[i]
                )
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    ensure!(
        parse_year(&s.index[0]).is_some(),
        "{file}: first date `{}` is neither YYYY nor YYYY-MM",
        s.index[0]
    );
    Ok(TimeSeries {
        named,
        index: s.index,
        values,
    })
}

// ANCHOR: split_tail
/// Splits `values` into the training part and the held-out tail of its last `horizon`
/// values, in time order.
///
/// An error if `horizon` is 0 or leaves fewer than two training values.
pub fn split_tail(values: &[f64], horizon: usize) -> Result<(&[f64], &[f64])> {
    if horizon == 0 {
        bail!("a held-out tail of 0 values: the horizon must be at least 1");
    }
    if horizon + 2 > values.len() {
        bail!(
            "a held-out tail of {horizon} values leaves {} of the series' {} for \
             training (at least 2 are needed): use a shorter horizon",
            values.len().saturating_sub(horizon),
            values.len()
        );
    }
    Ok(values.split_at(values.len() - horizon))
}
// ANCHOR_END: split_tail
