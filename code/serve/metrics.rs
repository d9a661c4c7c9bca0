//! What `GET /metrics` exports, in Prometheus' text format (OpenMetrics): requests by
//! route and status, request latency by route, images per forward pass, predictions by
//! class, which model version is loaded, whether the server is ready, the reloads tried
//! from the registry, and, when the server watches for drift, every detector's latest
//! score, p-value and alarm with the requests its monitor took and dropped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's template (`/v1/models/{name}/predict`), or `unmatched`.
    pub route: String,
    /// The HTTP status sent.
    pub status: u16,
}

/// Labels of a per-route histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's template.
    pub route: String,
}

/// Labels of the predicted-class counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// The predicted class.
    pub class: u32,
}

/// Labels of the loaded-model gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The model's name.
    pub model: String,
    /// Its version.
    pub version: String,
}

/// Labels of the model-reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The version the server tried to load.
    pub version: String,
    /// `ok` or `failed`.
    pub outcome: String,
}

/// Labels of a drift detector's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    /// The test: `psi`, `ks`, `wasserstein`, `chi_square` or `mmd`.
    pub detector: String,
    /// What it compares: `confidence`, `ink`, `class` or `embedding`.
    pub feature: String,
}

/// Labels of the drift monitor's request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `observed` (the monitor took it), `dropped` (its queue was full) or
    /// `rejected` (it could not be compared with the reference).
    pub outcome: String,
}

/// A gauge of floating-point values.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The drift monitor's metrics (handles that share the registry's values).
#[derive(Clone, Default)]
pub struct DriftMetrics {
    /// Each detector's statistic at its latest check.
    pub score: Family<DriftLabels, FloatGauge>,
    /// Each test's p-value at its latest check (the tests that have one).
    pub p_value: Family<DriftLabels, FloatGauge>,
    /// What a score must exceed to alarm, for the detectors without a p-value.
    pub threshold: Family<DriftLabels, FloatGauge>,
    /// The significance level the tests with a p-value alarm at.
    pub alpha: FloatGauge,
    /// 1 while a detector's latest check raised the alarm, else 0.
    pub alarm: Family<DriftLabels, Gauge>,
    /// Checks run.
    pub checks: Counter,
    /// Served images offered to the monitor, by outcome.
    pub requests: Family<OutcomeLabels, Counter>,
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from the request's arrival to its response, by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Images per prediction request.
    pub batch_images: Histogram,
    /// Predictions by class.
    pub predicted: Family<ClassLabels, Counter>,
    /// 1 for the model version being served.
    pub model: Family<ModelLabels, Gauge>,
    /// 1 once a model is loaded and serving (what `/readyz` answers 200 to), else 0.
    pub ready: Gauge,
    /// The drift monitor's metrics (exported even when no monitor runs, with no
    /// samples: a dashboard shows "no data", not an unknown name).
    pub drift: DriftMetrics,
    /// Attempts to load a new version from the registry, by version and outcome.
    pub reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dlbook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        // 50 µs to ~1.6 s in factors of 2: the server answers in well under a millisecond
        // at low load, and the 200 ms mark of the course's goal falls inside the range.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(5e-5, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response",
            latency.clone(),
        );
        let batch_images = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "batch_images",
            "Images per prediction request",
            batch_images.clone(),
        );
        let predicted = Family::<ClassLabels, Counter>::default();
        registry.register(
            "predictions",
            "Predictions by predicted class",
            predicted.clone(),
        );
        let model = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_loaded",
            "1 for the model version being served",
            model.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "model_ready",
            "1 once a model is loaded and serving, else 0",
            ready.clone(),
        );
        let drift = DriftMetrics::default();
        registry.register(
            "drift_score",
            "Each drift detector's statistic at its latest check (PSI, KS D, W1, X2, MMD2)",
            drift.score.clone(),
        );
        registry.register(
            "drift_p_value",
            "Each drift test's p-value at its latest check",
            drift.p_value.clone(),
        );
        registry.register(
            "drift_threshold",
            "The score above which a drift detector without a p-value alarms",
            drift.threshold.clone(),
        );
        registry.register(
            "drift_alpha",
            "The significance level at which the drift tests with a p-value alarm",
            drift.alpha.clone(),
        );
        registry.register(
            "drift_alarm",
            "1 while a drift detector's latest check raised the alarm, else 0",
            drift.alarm.clone(),
        );
        registry.register(
            "drift_checks",
            "Checks the drift monitor ran",
            drift.checks.clone(),
        );
        registry.register(
            "drift_requests",
            "Served images offered to the drift monitor, by outcome",
            drift.requests.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "model_reloads",
            "Attempts to load a new model version from the registry, by outcome",
            reloads.clone(),
        );
        Metrics {
            registry,
            reloads,
            requests,
            latency,
            batch_images,
            predicted,
            model,
            ready,
            drift,
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing metrics to a String cannot fail");
        out
    }
}
