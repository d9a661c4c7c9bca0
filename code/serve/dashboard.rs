//! What the dashboard page (`GET /dashboard`) draws, kept by the server itself: a ring
//! buffer of the last [`SAMPLES`] intervals (prediction throughput, 4xx and 5xx rates,
//! the p50 and p99 latency of each interval) and of the drift monitor's last [`CHECKS`]
//! checks, served as JSON at `GET /dashboard.json`.
//!
//! The request path adds one latency to a vector under a lock held for a push; a
//! sampler thread closes an interval every [`ServeConfig::sample_every`] (sorting its
//! latencies for the quantiles) and ends when the server's state is dropped. Prometheus
//! and Grafana do the same from `/metrics` over days; this page needs nothing but the
//! server, for the minutes a reader watches it.
//!
//! [`ServeConfig::sample_every`]: super::ServeConfig::sample_every

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mlops::drift::{Detector, MonitorConfig, Signal};

/// Intervals kept (five minutes at one a second).
pub const SAMPLES: usize = 300;
/// Drift checks kept.
pub const CHECKS: usize = 300;
/// Latencies kept per interval (beyond this, an interval's quantiles are those of its
/// first requests).
const MAX_LATENCIES: usize = 1 << 16;

/// One closed interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds from the server's start to the interval's end.
    pub t: f64,
    /// Prediction requests answered per second.
    pub requests_per_s: f64,
    /// Prediction requests answered 4xx per second.
    pub client_errors_per_s: f64,
    /// Requests (any route) answered 5xx per second.
    pub server_errors_per_s: f64,
    /// Median latency of the interval's prediction requests, ms (none without any).
    pub p50_ms: Option<f64>,
    /// Their 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// One detector, as the page labels it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectorView {
    /// The metric's `detector` label.
    pub detector: String,
    /// Its `feature` label.
    pub feature: String,
    /// Its score alarms above this (for the detectors without a p-value).
    pub threshold: Option<f64>,
}

/// One drift check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Seconds from the server's start.
    pub t: f64,
    /// Images the monitor had taken.
    pub seen: u64,
    /// Each detector's score, in [`DriftView::detectors`] order.
    pub scores: Vec<f64>,
    /// Each p-value (none for the detectors without one).
    pub p_values: Vec<Option<f64>>,
    /// Each alarm.
    pub alarms: Vec<bool>,
}

/// The drift monitor, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftView {
    /// The images each check compares with the reference.
    pub window: usize,
    /// Images between checks.
    pub check_every: usize,
    /// The tests' significance level.
    pub alpha: f64,
    /// The detectors.
    pub detectors: Vec<DetectorView>,
    /// The last checks, oldest first.
    pub checks: VecDeque<Check>,
}

#[derive(Default)]
struct State {
    latencies: Vec<f64>,
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    total_requests: u64,
    samples: VecDeque<Sample>,
    drift: Option<DriftView>,
}

/// The dashboard's ring buffers.
pub struct Dashboard {
    interval: Duration,
    start: Instant,
    last_tick: Mutex<Instant>,
    state: Mutex<State>,
}

/// What `GET /dashboard.json` answers (with the model and class counts the handler
/// adds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds per sample.
    pub interval_s: f64,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Prediction requests answered since the start.
    pub total_requests: u64,
    /// The closed intervals, oldest first.
    pub samples: Vec<Sample>,
    /// The drift monitor (none when the server runs without a reference).
    pub drift: Option<DriftView>,
}

impl Dashboard {
    /// An empty dashboard sampling every `interval`.
    pub fn new(interval: Duration) -> Dashboard {
        let now = Instant::now();
        Dashboard {
            interval,
            start: now,
            last_tick: Mutex::new(now),
            state: Mutex::new(State::default()),
        }
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one answered request: `predict` when it was a prediction request.
    pub fn record(&self, predict: bool, status: u16, seconds: f64) {
        let mut s = self.state();
        if status >= 500 {
            s.server_errors += 1;
        }
        if predict {
            s.requests += 1;
            s.total_requests += 1;
            if (400..500).contains(&status) {
                s.client_errors += 1;
            }
            if s.latencies.len() < MAX_LATENCIES {
                s.latencies.push(seconds);
            }
        }
    }

    /// Closes the current interval into a sample.
    pub fn tick(&self) {
        let now = Instant::now();
        let secs = {
            let mut last = self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
            let secs = now.duration_since(*last).as_secs_f64().max(1e-9);
            *last = now;
            secs
        };
        let mut s = self.state();
        let mut lat = std::mem::take(&mut s.latencies);
        lat.sort_by(f64::total_cmp);
        let sample = Sample {
            t: now.duration_since(self.start).as_secs_f64(),
            requests_per_s: s.requests as f64 / secs,
            client_errors_per_s: s.client_errors as f64 / secs,
            server_errors_per_s: s.server_errors as f64 / secs,
            p50_ms: quantile(&lat, 0.5).map(|v| v * 1e3),
            p99_ms: quantile(&lat, 0.99).map(|v| v * 1e3),
        };
        (s.requests, s.client_errors, s.server_errors) = (0, 0, 0);
        if s.samples.len() == SAMPLES {
            s.samples.pop_front();
        }
        s.samples.push_back(sample);
    }

    /// From now on the page shows a drift monitor with these settings.
    pub fn watch_drift(&self, cfg: MonitorConfig, w1_threshold: f64) {
        let detectors = Detector::ALL
            .iter()
            .map(|&d| {
                let (detector, feature) = super::drift::labels(d);
                DetectorView {
                    detector: detector.into(),
                    feature: feature.into(),
                    threshold: match d {
                        Detector::PsiConfidence => Some(cfg.psi_threshold),
                        Detector::WassersteinInk => Some(w1_threshold),
                        _ => None,
                    },
                }
            })
            .collect();
        self.state().drift = Some(DriftView {
            window: cfg.window,
            check_every: cfg.check_every,
            alpha: cfg.alpha,
            detectors,
            checks: VecDeque::new(),
        });
    }

    /// Adds a check of the monitor, after `seen` images, to the ring.
    pub fn drift_check(&self, seen: u64, signals: &[Signal]) {
        let t = self.start.elapsed().as_secs_f64();
        let mut s = self.state();
        let Some(view) = s.drift.as_mut() else { return };
        if view.checks.len() == CHECKS {
            view.checks.pop_front();
        }
        view.checks.push_back(Check {
            t,
            seen,
            scores: signals.iter().map(|s| s.score).collect(),
            p_values: signals.iter().map(|s| s.p_value).collect(),
            alarms: signals.iter().map(|s| s.alarm).collect(),
        });
    }

    /// The buffers as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        Snapshot {
            interval_s: self.interval.as_secs_f64(),
            uptime_s: self.start.elapsed().as_secs_f64(),
            total_requests: s.total_requests,
            samples: s.samples.iter().cloned().collect(),
            drift: s.drift.clone(),
        }
    }
}

/// The nearest-rank `q` quantile of the sorted `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_becomes_rates_and_nearest_rank_quantiles() {
        let d = Dashboard::new(Duration::from_secs(1));
        for i in 1..=100 {
            d.record(true, 200, f64::from(i) * 1e-3);
        }
        d.record(true, 422, 0.5e-3);
        d.record(false, 503, 1e-3);
        d.record(false, 200, 1.0);
        d.tick();
        let s = &d.snapshot().samples[0];
        // 101 prediction latencies: 0.5 ms, then 1 to 100 ms.
        assert_eq!(s.p50_ms, Some(50.0));
        assert_eq!(s.p99_ms, Some(99.0));
        assert!(s.requests_per_s > 0.0 && s.server_errors_per_s > 0.0);
        assert!((s.client_errors_per_s * 101.0 - s.requests_per_s).abs() < 1e-6);
        d.tick();
        let empty = &d.snapshot().samples[1];
        assert_eq!((empty.p50_ms, empty.requests_per_s), (None, 0.0));
        assert_eq!(d.snapshot().total_requests, 101);
    }

    #[test]
    fn the_ring_keeps_the_latest_samples() {
        let d = Dashboard::new(Duration::from_secs(1));
        for _ in 0..SAMPLES + 5 {
            d.tick();
        }
        let s = d.snapshot().samples;
        assert_eq!(s.len(), SAMPLES);
        assert!(s.windows(2).all(|w| w[0].t <= w[1].t));
    }
}
