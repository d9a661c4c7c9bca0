//! What `GET /metrics` exports, in Prometheus' text format (OpenMetrics): requests by
//! route and status, request latency by route, images per forward pass, predictions by
//! class, which model version is loaded, and the reloads tried from the registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
