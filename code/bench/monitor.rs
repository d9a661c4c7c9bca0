//! `dlbook bench --name serve_monitor`: the server watching its own traffic for drift,
//! and the dashboard's picture for the book.
//!
//! One run trains chapter 5's CNN on MNIST (one epoch), writes its drift reference from
//! the first test images, and serves it with the monitor on, on a free port of
//! 127.0.0.1, as `dlbook serve MODEL --drift-reference FILE` would. It then sends
//! other test images, clean, and then the same images with thickened strokes (chapter
//! 13.4's 3 × 3 dilation), in requests of a few images, and reads `/metrics` after
//! each phase, once the monitor has taken every image. Last, headless Chromium opens
//! `/dashboard` and takes the screenshot the book shows.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Serialize;

use crate::data::idx::mnist;
use crate::data::{DataDir, Split};
use crate::experiments::drift_stream::morph;
use crate::mlops::drift::{Detector, MonitorConfig};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Table, Value};
use crate::serve::batcher::MAX_BATCH_IMAGES;
use crate::serve::drift::{labels, mnist_reference};
use crate::serve::local::{request, Running};
use crate::serve::model::start_workers;
use crate::serve::{AppState, Deployed, ServeConfig};

/// What to serve and send.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchConfig {
    /// MNIST training images of the served model's one epoch.
    pub train_images: usize,
    /// The first test images: the drift reference.
    pub reference_images: usize,
    /// Clean test images sent after the reference's (and then again, thickened).
    pub sent_images: usize,
    /// Images per request.
    pub batch: usize,
    /// The server's drift monitor.
    pub monitor: MonitorConfig,
    /// Runs (one: the figures are states, not timings).
    pub runs: usize,
    /// Inference workers.
    pub threads: usize,
}

impl WatchConfig {
    /// Seconds: what the tests run.
    pub fn quick() -> Self {
        WatchConfig {
            train_images: 8000,
            reference_images: 500,
            sent_images: 400,
            batch: 20,
            monitor: MonitorConfig {
                window: 200,
                check_every: 100,
                alpha: 0.005,
                psi_bins: 10,
                psi_threshold: 0.2,
                n_permutations: 400,
                n_calibration: 100,
                seed: 0,
            },
            runs: 1,
            threads: 1,
        }
    }

    /// The book's picture: the server's default monitor.
    pub fn full() -> Self {
        WatchConfig {
            train_images: 20_000,
            reference_images: 1000,
            sent_images: 1000,
            batch: 10,
            monitor: crate::serve::drift::default_monitor(),
            runs: 1,
            threads: 2,
        }
    }
}

/// A server with a drift monitor after its two phases of traffic.
pub struct Watched {
    /// The server, still running (for the dashboard).
    pub server: Running,
    /// `/metrics` once the monitor had taken the clean images.
    pub after_clean: String,
    /// `/metrics` once it had taken the thickened ones too.
    pub after_shift: String,
}

/// The value of the sample `name{...}` whose labels contain `labels` (`""`: any) in the
/// metrics text `text`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET /metrics` of the server at `addr`.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, body) = request(addr, "GET", "/metrics", None)?;
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Waits (at most `timeout`) until the monitor of the server at `addr` has taken `n`
/// images, and returns `/metrics` then.
pub fn wait_observed(addr: SocketAddr, n: u64, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        let text = scrape(addr)?;
        let seen = metric(&text, "dlbook_drift_requests_total", "outcome=\"observed\"")
            .unwrap_or(0.0);
        if seen as u64 >= n {
            return Ok(text);
        }
        if start.elapsed() > timeout {
            bail!(
                "the drift monitor took {seen} of {n} images within {timeout:?}:\n{text}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Serves the model file `weights` with a drift reference from the first test images,
/// and sends it the next test images clean, then thickened.
pub fn watch(cfg: &WatchConfig, dir: &DataDir, weights: &Path) -> Result<Watched> {
    let reference = mnist_reference(dir, weights, cfg.reference_images, cfg.monitor)?;
    let state = AppState::new(ServeConfig {
        log_requests: false,
        sample_every: Duration::from_millis(250),
        ..ServeConfig::default()
    });
    let workers = start_workers(weights, cfg.threads, 1024, MAX_BATCH_IMAGES)?;
    state.deploy(Deployed::new("mnist_cnn", "watched", workers));
    state.monitor_drift(&reference)?;
    let server = Running::start(state, 2)?;
    let test = mnist(dir, Split::Test)?;
    let first = cfg.reference_images;
    let images: Vec<Vec<f32>> = (first..first + cfg.sent_images)
        .map(|i| {
            test.images.pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&b| f32::from(b) / 255.0)
                .collect()
        })
        .collect();
    let send = |imgs: &[Vec<f32>]| -> Result<()> {
        let bar = progress::bar(imgs.len() as u64, "images sent");
        for chunk in imgs.chunks(cfg.batch.max(1)) {
            let body = serde_json::to_vec(&serde_json::json!({ "instances": chunk }))?;
            let (status, answer) = request(
                server.addr,
                "POST",
                "/v1/models/mnist_cnn/predict",
                Some(("application/json", &body)),
            )?;
            if status != 200 {
                bail!(
                    "a prediction answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(())
    };
    let n = cfg.sent_images as u64;
    send(&images)?;
    let after_clean = wait_observed(server.addr, n, Duration::from_secs(120))?;
    let thick: Vec<Vec<f32>> = images.iter().map(|img| morph(img, true)).collect();
    send(&thick)?;
    let after_shift = wait_observed(server.addr, 2 * n, Duration::from_secs(120))?;
    Ok(Watched {
        server,
        after_clean,
        after_shift,
    })
}

/// Runs `cfg` and reports each detector's state after each phase, with the dashboard's
/// screenshot.
pub fn run(cfg: &WatchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let (scratch, weights, _) =
        super::serve::train_for_serving(dir, cfg.train_images, "serve-monitor")?;
    let w = watch(cfg, dir, &weights)?;
    // Two samples with no traffic, so the charts end on the idle server too.
    std::thread::sleep(Duration::from_millis(600));
    let shot = super::serve::screenshot(&w.server.url("/dashboard"), 1300, 1120)
        .context("the dashboard's screenshot")?;
    w.server.stop()?;
    let _ = std::fs::remove_dir_all(&scratch);

    let mut r = Report::new(
        "ch13",
        name,
        "The server's drift monitor on clean, then thickened MNIST digits",
    );
    r.config = serde_json::to_value(cfg)?;
    let rows = Detector::ALL
        .iter()
        .map(|&d| {
            let (det, feat) = labels(d);
            let l = format!("detector=\"{det}\",feature=\"{feat}\"");
            let get =
                |text: &str, m: &str| Value::Num(metric(text, m, &l).unwrap_or(f64::NAN));
            vec![
                Value::Text(det.into()),
                Value::Text(feat.into()),
                get(&w.after_clean, "dlbook_drift_score"),
                get(&w.after_clean, "dlbook_drift_alarm"),
                get(&w.after_shift, "dlbook_drift_score"),
                get(&w.after_shift, "dlbook_drift_alarm"),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "alarms".into(),
        caption: format!(
            "`dlbook_drift_score` and `dlbook_drift_alarm` on /metrics after {} clean MNIST \
             test images, then after the same images thickened; reference: the first {} \
             test images; a window of {}, a check every {}, alpha {}",
            cfg.sent_images,
            cfg.reference_images,
            cfg.monitor.window,
            cfg.monitor.check_every,
            cfg.monitor.alpha
        ),
        columns: vec![
            col("detector", Format::Int),
            col("feature", Format::Int),
            col("score, clean", Format::Sci(2)),
            col("alarm, clean", Format::Int),
            col("score, thickened", Format::Sci(2)),
            col("alarm, thickened", Format::Int),
        ],
        rows,
    });
    r.figures.push(Figure {
        name: "dashboard".into(),
        title: "The dashboard page (GET /dashboard) after clean, then thickened digits"
            .into(),
        plot: Plot::Picture {
            png_base64: base64::engine::general_purpose::STANDARD.encode(&shot),
            width: 1300,
            height: 1120,
        },
    });
    Ok(r)
}
