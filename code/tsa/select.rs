//! The order search: fit every ARIMA$(p,d,q)$ on a grid and rank by AIC or BIC.
//!
//! Both criteria trade fit against size, $-2\log L + c\,k$, with $c = 2$ for AIC and
//! $c = \log n$ for BIC. Past $n \approx 8$ observations BIC charges more per
//! parameter, so it never prefers a larger model than AIC does on the same grid; where
//! they disagree, AIC has taken a parameter that improves the likelihood by more than 1
//! but less than $\frac12\log n$.

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::arima::{Arima, Order, Trend};

/// One fitted order of the search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchRow {
    /// The AR order.
    pub p: usize,
    /// The MA order.
    pub q: usize,
    /// The exact log-likelihood.
    pub llf: f64,
    /// Its AIC.
    pub aic: f64,
    /// Its BIC.
    pub bic: f64,
}

// ANCHOR: order_search
/// Fits ARIMA$(p,d,q)$ with `trend` by exact ML for every $p \le$ `p_max`,
/// $q \le$ `q_max` (in parallel), in the order $p$ then $q$.
pub fn order_search(
    y: &[f64],
    d: usize,
    trend: Trend,
    p_max: usize,
    q_max: usize,
) -> Result<Vec<SearchRow>> {
    let grid: Vec<(usize, usize)> = (0..=p_max)
        .flat_map(|p| (0..=q_max).map(move |q| (p, q)))
        .collect();
    grid.par_iter()
        .map(|&(p, q)| {
            let fit = Arima::new(Order::new(p, d, q)).with_trend(trend).fit(y)?;
            Ok(SearchRow {
                p,
                q,
                llf: fit.llf,
                aic: fit.aic,
                bic: fit.bic,
            })
        })
        .collect()
}

/// The row with the smallest `key` (AIC or BIC).
pub fn best_by(rows: &[SearchRow], key: impl Fn(&SearchRow) -> f64) -> &SearchRow {
    rows.iter()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
        .expect("an order search has at least one row")
}
// ANCHOR_END: order_search
