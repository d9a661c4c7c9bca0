//! `dlbook serve`: the MNIST CNN behind an HTTP API (axum).
//!
//! Routes: `POST /v1/models/{name}/predict` (JSON in, probabilities out, every input
//! checked by [`validate`]), `GET /healthz` (the process is up), `GET /readyz` (a model is
//! loaded), `GET /metrics` (Prometheus), `GET /openapi.json` (the API's description),
//! `GET /` (a page where a reader draws a digit and sees the model's probabilities),
//! `GET /dashboard` (a page of the server's latency, throughput, errors, predicted
//! classes and drift, drawn from `GET /dashboard.json`, see [`dashboard`]).
//!
//! How a request goes: a middleware gives it an id (the client's `x-request-id`, or a new
//! one) and, on the way out, counts it, times it and logs it as one JSON line; the handler
//! reads at most [`validate::MAX_BODY_BYTES`], validates, queues the images for the
//! inference workers ([`batcher`]) and waits at most the configured timeout. Every
//! failure is an answer with a status and a JSON error, never a dropped connection.
//!
//! The model being served sits behind a lock as an `Arc`: [`AppState::deploy`] swaps in
//! a new one while requests in flight finish on the one they started with, whose
//! workers stop once the last of those requests is answered.
//!
//! Given a drift reference ([`AppState::monitor_drift`]), the server also compares the
//! images it answers with it, off the request's path ([`drift`]).

pub mod batcher;
pub mod dashboard;
pub mod drift;
pub mod local;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod reload;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use batcher::{Batcher, SubmitError};
use dashboard::Dashboard;
use drift::{DriftFeed, Reference};
use metrics::{ClassLabels, Metrics, ModelLabels, RequestLabels, RouteLabels};
use validate::{parse_predict, ApiError, MAX_BODY_BYTES};

/// A model being served: its name, version and workers.
pub struct Deployed {
    /// The name in the route (`/v1/models/{name}/predict`).
    pub name: String,
    /// The version (reported in answers and metrics).
    pub version: String,
    batcher: Batcher,
}

impl Deployed {
    /// A model ready to serve.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        batcher: Batcher,
    ) -> Self {
        Deployed {
            name: name.into(),
            version: version.into(),
            batcher,
        }
    }
}

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The longest a prediction may wait for its answer (then 504).
    pub timeout: Duration,
    /// One JSON line per request on stderr.
    pub log_requests: bool,
    /// The dashboard's sampling interval.
    pub sample_every: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            timeout: Duration::from_secs(5),
            log_requests: true,
            sample_every: Duration::from_secs(1),
        }
    }
}

struct Inner {
    deployed: RwLock<Option<Arc<Deployed>>>,
    metrics: Metrics,
    dashboard: Arc<Dashboard>,
    drift: OnceLock<DriftFeed>,
    cfg: ServeConfig,
    next_id: AtomicU64,
    id_prefix: String,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// A server with no model yet (not ready).
    pub fn new(cfg: ServeConfig) -> AppState {
        // Request ids: this process's start time, then a counter, so ids from two runs
        // of the server do not collide in one log.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let inner = Arc::new(Inner {
            deployed: RwLock::new(None),
            metrics: Metrics::default(),
            dashboard: Arc::new(Dashboard::new(cfg.sample_every)),
            drift: OnceLock::new(),
            cfg,
            next_id: AtomicU64::new(0),
            id_prefix: format!("{:x}", nanos & 0xffff_ffff_ffff),
        });
        // The dashboard's sampler: closes an interval every `sample_every`, and ends
        // once the state is gone.
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let every = inner.cfg.sample_every.max(Duration::from_millis(10));
        let _ =
            std::thread::Builder::new()
                .name("dashboard".into())
                .spawn(move || loop {
                    std::thread::sleep(every);
                    match weak.upgrade() {
                        Some(inner) => inner.dashboard.tick(),
                        None => return,
                    }
                });
        AppState(inner)
    }

    /// Compares the images this server answers from now on with `reference`, on a
    /// thread of its own ([`drift::DriftFeed`]); its checks go to `/metrics` and the
    /// dashboard. Errors on a reference the monitor cannot use, or a second one.
    pub fn monitor_drift(&self, reference: &Reference) -> Result<()> {
        let feed = DriftFeed::start(
            reference,
            self.0.metrics.drift.clone(),
            Arc::clone(&self.0.dashboard),
        )?;
        self.0
            .drift
            .set(feed)
            .map_err(|_| anyhow::anyhow!("this server already watches for drift"))
    }

    /// The dashboard's buffers.
    pub fn dashboard(&self) -> &Dashboard {
        &self.0.dashboard
    }

    /// Serves `model` from now on; requests already running finish on the previous one.
    pub fn deploy(&self, model: Deployed) {
        let m = &self.0.metrics;
        let mut slot = self.0.deployed.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.as_ref() {
            m.model
                .get_or_create(&ModelLabels {
                    model: old.name.clone(),
                    version: old.version.clone(),
                })
                .set(0);
        }
        m.model
            .get_or_create(&ModelLabels {
                model: model.name.clone(),
                version: model.version.clone(),
            })
            .set(1);
        *slot = Some(Arc::new(model));
        m.ready.set(1);
    }

    /// The model being served, if any.
    pub fn deployed(&self) -> Option<Arc<Deployed>> {
        self.0
            .deployed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    fn new_request_id(&self) -> String {
        let n = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.0.id_prefix)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(json!({ "error": self }))).into_response()
    }
}

/// The prediction route's template (its `route` label).
pub const PREDICT_ROUTE: &str = "/v1/models/{name}/predict";

/// The routes, with the request-id, logging and metrics middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(PREDICT_ROUTE, post(predict))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/", get(draw_page))
        .route("/dashboard", get(dashboard_page))
        .route("/dashboard.json", get(dashboard_json))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.deployed() {
        Some(d) => {
            Json(json!({"status": "ready", "model": d.name, "version": d.version}))
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response(),
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics().encode(),
    )
        .into_response()
}

async fn openapi_json(State(s): State<AppState>) -> Json<serde_json::Value> {
    let deployed = s.deployed();
    Json(openapi::document(
        deployed.as_ref().map(|d| d.name.as_str()),
    ))
}

/// The drawing page: one self-contained HTML file (inline script and style, nothing
/// fetched from elsewhere), compiled into the binary.
pub const DRAW_PAGE: &str = include_str!("draw.html");

async fn draw_page() -> axum::response::Html<&'static str> {
    axum::response::Html(DRAW_PAGE)
}

/// The dashboard page: self-contained like the drawing page; it polls
/// `/dashboard.json` and draws SVG charts.
pub const DASHBOARD_PAGE: &str = include_str!("dashboard.html");

async fn dashboard_page() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD_PAGE)
}

async fn dashboard_json(State(s): State<AppState>) -> Json<serde_json::Value> {
    let deployed = s.deployed();
    let m = s.metrics();
    let n_classes = deployed.as_ref().map_or(0, |d| d.batcher.n_classes());
    let classes: Vec<u64> = (0..n_classes as u32)
        .map(|class| m.predicted.get_or_create(&ClassLabels { class }).get())
        .collect();
    let drift_requests = |outcome: &str| {
        m.drift
            .requests
            .get_or_create(&metrics::OutcomeLabels {
                outcome: outcome.into(),
            })
            .get()
    };
    let drift_counts = s.0.drift.get().map(|_| {
        json!({
            "observed": drift_requests("observed"),
            "dropped": drift_requests("dropped"),
            "rejected": drift_requests("rejected"),
        })
    });
    Json(json!({
        "model": {
            "ready": deployed.is_some(),
            "name": deployed.as_ref().map(|d| d.name.clone()),
            "version": deployed.as_ref().map(|d| d.version.clone()),
        },
        "classes": classes,
        "drift_requests": drift_counts,
        "dashboard": s.dashboard().snapshot(),
    }))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        404,
        "not_found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn predict(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json_declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_declared {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "send the body as JSON, with `content-type: application/json`",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                413,
                "body_too_large",
                format!("the body could not be read within the limit of {MAX_BODY_BYTES} bytes: {e}"),
            )
        })?;
    let deployed = s.deployed().ok_or_else(|| {
        ApiError::new(
            503,
            "not_ready",
            "no model is loaded yet: try again when /readyz says ready",
        )
    })?;
    if name != deployed.name {
        return Err(ApiError::new(
            404,
            "unknown_model",
            format!("no model `{name}`; this server serves `{}`", deployed.name),
        ));
    }
    let (pixels, n) = parse_predict(&bytes)?;
    // With a drift monitor, each image's ink is summed now: the pixels go to the
    // workers.
    let inks: Option<Vec<f64>> =
        s.0.drift
            .get()
            .map(|_| pixels.chunks(validate::PIXELS).map(drift::ink).collect());
    let rx = deployed.batcher.submit(pixels, n).map_err(|e| match e {
        SubmitError::Overloaded => ApiError::new(
            503,
            "overloaded",
            "the inference queue is full: retry shortly",
        ),
        SubmitError::Stopped => {
            ApiError::new(503, "not_ready", "the model is being replaced: retry")
        }
    })?;
    let answer = match tokio::time::timeout(s.0.cfg.timeout, rx).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            return Err(ApiError::new(
                503,
                "model_failed",
                "the model could not answer this request",
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                504,
                "timeout",
                format!("no answer within {} ms", s.0.cfg.timeout.as_millis()),
            ))
        }
    };
    let k = deployed.batcher.n_classes();
    let m = s.metrics();
    m.batch_images.observe(n as f64);
    if let (Some(feed), Some(inks)) = (s.0.drift.get(), inks) {
        let e = answer.embedding.len() / n.max(1);
        feed.offer(
            inks.iter()
                .enumerate()
                .map(|(i, &ink)| {
                    drift::observation(
                        &answer.probs[i * k..(i + 1) * k],
                        &answer.embedding[i * e..(i + 1) * e],
                        ink,
                    )
                })
                .collect(),
        );
    }
    let predictions: Vec<serde_json::Value> = answer
        .probs
        .chunks(k)
        .map(|row| {
            let class = (0..k)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            m.predicted
                .get_or_create(&ClassLabels {
                    class: class as u32,
                })
                .inc();
            json!({"class": class, "probabilities": row})
        })
        .collect();
    Ok(Json(json!({
        "model": deployed.name,
        "version": deployed.version,
        "predictions": predictions,
    }))
    .into_response())
}

/// Request id, metrics and one log line per request.
async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    // The client's id when it is a sane token, else a new one.
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| s.new_request_id(), str::to_string);
    let method = req.method().to_string();
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let seconds = start.elapsed().as_secs_f64();
    let m = s.metrics();
    m.requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status,
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(seconds);
    s.dashboard()
        .record(route == PREDICT_ROUTE, status, seconds);
    if s.0.cfg.log_requests {
        eprintln!(
            "{}",
            json!({
                "request_id": id, "method": method, "route": route,
                "status": status, "latency_ms": seconds * 1e3,
            })
        );
    }
    resp
}

/// Binds `addr` and serves until `shutdown` completes, then stops taking connections and
/// finishes the requests in flight.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving")
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
