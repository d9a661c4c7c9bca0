//! The server's drift monitor: a reference made once from images the model is known to
//! handle, and a thread that compares the images the server answers with it.
//!
//! `dlbook drift reference MODEL --out FILE` runs the model on MNIST test images and
//! writes what a [`Monitor`](crate::mlops::drift::Monitor) keeps of each (predicted
//! class, confidence, ink, embedding) with the monitor's settings and the model file's
//! sha256 ([`Reference`]).
//! `dlbook serve MODEL --drift-reference FILE` starts a [`DriftFeed`]: for each
//! prediction request, the handler sums each image's pixels (its ink, 784 additions) and
//! offers the answers to a bounded queue without waiting ([`DriftFeed::offer`]); a
//! thread of its own feeds them to the monitor and, after every check, sets each
//! detector's gauges ([`DriftMetrics`]) and adds the check to the dashboard. A response
//! never waits for a drift check: when the queue is full the images are dropped and
//! counted (`dlbook_drift_requests_total{outcome="dropped"}`), so a monitor that
//! cannot keep up shows as a count, not as latency.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::batcher::Classifier;
use super::dashboard::Dashboard;
use super::metrics::{DriftLabels, DriftMetrics, OutcomeLabels};
use crate::mlops::drift::{Detector, MonitorConfig, Request, Signal};

/// The first field of a reference file: what it is, and the layout's version.
pub const FORMAT: &str = "dlbook-drift-reference/1";

/// Batches of images offered to the monitor that may wait in its queue.
pub const QUEUE: usize = 256;

/// The `detector` and `feature` labels of a detector's metrics.
pub fn labels(d: Detector) -> (&'static str, &'static str) {
    match d {
        Detector::PsiConfidence => ("psi", "confidence"),
        Detector::KsConfidence => ("ks", "confidence"),
        Detector::KsInk => ("ks", "ink"),
        Detector::WassersteinInk => ("wasserstein", "ink"),
        Detector::ChiSquareClass => ("chi_square", "class"),
        Detector::MmdEmbedding => ("mmd", "embedding"),
    }
}

fn drift_labels(d: Detector) -> DriftLabels {
    let (detector, feature) = labels(d);
    DriftLabels {
        detector: detector.into(),
        feature: feature.into(),
    }
}

// ANCHOR: observation
/// What the monitor keeps of one answered image: `probs` its class probabilities,
/// `embedding` its embedding, `ink` its mean pixel value ([`ink`]).
pub fn observation(probs: &[f32], embedding: &[f32], ink: f64) -> Request {
    let class = (0..probs.len())
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap_or(0);
    Request {
        class,
        confidence: probs.get(class).map_or(0.0, |&p| f64::from(p)),
        ink,
        embedding: embedding.iter().map(|&v| f64::from(v)).collect(),
    }
}
// ANCHOR_END: observation

/// An image's mean pixel value.
pub fn ink(pixels: &[f32]) -> f64 {
    pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len().max(1) as f64
}

/// What the monitor keeps of each of `n` images (`pixels`: `n × 784`) answered by
/// `model`, in batches of 256.
pub fn observe_all(model: &mut dyn Classifier, pixels: &[f32], n: usize) -> Vec<Request> {
    let d = pixels.len() / n.max(1);
    let k = model.n_classes();
    let mut out = Vec::with_capacity(n);
    for (chunk, m) in pixels
        .chunks(256 * d)
        .map(|c| (c, c.len() / d.max(1)))
        .filter(|&(_, m)| m > 0)
    {
        let (probs, emb) = model.predict_embedded(chunk, m);
        let e = emb.len() / m;
        for i in 0..m {
            out.push(observation(
                &probs[i * k..(i + 1) * k],
                &emb[i * e..(i + 1) * e],
                ink(&chunk[i * d..(i + 1) * d]),
            ));
        }
    }
    out
}

/// A drift reference as stored: the monitor's settings, the sha256 of the model file
/// whose answers these are, and one entry per image in each column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// [`FORMAT`].
    pub format: String,
    /// The sha256 of the model file (hex): a reference is only meaningful for the
    /// model whose answers it holds.
    pub model_sha256: String,
    /// How the server's monitor watches.
    pub monitor: MonitorConfig,
    /// Predicted classes.
    pub class: Vec<usize>,
    /// Predicted classes' probabilities.
    pub confidence: Vec<f64>,
    /// Mean pixel values.
    pub ink: Vec<f64>,
    /// Embeddings, one row per image.
    pub embedding: Vec<Vec<f32>>,
}

impl Reference {
    /// The reference of `requests`, answered by the model file of sha256 `model_sha256`.
    pub fn new(model_sha256: &str, monitor: MonitorConfig, requests: &[Request]) -> Self {
        Reference {
            format: FORMAT.into(),
            model_sha256: model_sha256.into(),
            monitor,
            class: requests.iter().map(|r| r.class).collect(),
            confidence: requests.iter().map(|r| r.confidence).collect(),
            ink: requests.iter().map(|r| r.ink).collect(),
            embedding: requests
                .iter()
                .map(|r| r.embedding.iter().map(|&v| v as f32).collect())
                .collect(),
        }
    }

    /// The requests, after checking that the columns agree: one length, one embedding
    /// width, finite values, probabilities and inks in [0, 1].
    pub fn requests(&self) -> Result<Vec<Request>> {
        ensure!(
            self.format == FORMAT,
            "not a drift reference of this layout: format {:?}, expected {FORMAT:?}",
            self.format
        );
        let n = self.class.len();
        ensure!(n > 0, "the reference holds no images");
        for (name, len) in [
            ("confidence", self.confidence.len()),
            ("ink", self.ink.len()),
            ("embedding", self.embedding.len()),
        ] {
            ensure!(
                len == n,
                "the reference's columns differ in length: {n} classes, {len} {name} values"
            );
        }
        let width = self.embedding[0].len();
        for (i, row) in self.embedding.iter().enumerate() {
            ensure!(
                row.len() == width,
                "embedding {i} has {} values, embedding 0 has {width}",
                row.len()
            );
            ensure!(
                row.iter().all(|v| v.is_finite()),
                "embedding {i} holds a value that is not finite"
            );
        }
        for (name, col) in [("confidence", &self.confidence), ("ink", &self.ink)] {
            if let Some(i) = col.iter().position(|v| !(0.0..=1.0).contains(v)) {
                bail!("{name} {i} is {}, outside [0, 1]", col[i]);
            }
        }
        Ok((0..n)
            .map(|i| Request {
                class: self.class[i],
                confidence: self.confidence[i],
                ink: self.ink[i],
                embedding: self.embedding[i].iter().map(|&v| f64::from(v)).collect(),
            })
            .collect())
    }

    /// Writes the reference as JSON to `path`, through a temporary file renamed into
    /// place (a reader never sees half a file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(self)?;
        std::fs::write(&tmp, text)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }

    /// Reads a reference written by [`Reference::save`], with an error that names the
    /// file and what is wrong with it (not JSON, cut short, a field missing or
    /// unknown, columns that disagree), and fits its monitor to check the settings.
    pub fn load(path: &Path) -> Result<Reference> {
        let text =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let r: Reference = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is not a drift reference (write one with `dlbook drift reference`)",
                path.display()
            )
        })?;
        check_settings(&r.monitor)
            .and_then(|()| r.monitor.fit(r.requests()?).map(drop))
            .with_context(|| format!("the drift reference {}", path.display()))?;
        Ok(r)
    }
}

/// Refuses settings under which a detector could never alarm: a permutation p-value is
/// at least `1 / (n_permutations + 1)`, so the MMD test needs that below alpha.
pub fn check_settings(cfg: &MonitorConfig) -> Result<()> {
    let floor = 1.0 / (cfg.n_permutations as f64 + 1.0);
    ensure!(
        floor < cfg.alpha,
        "with {} permutations the MMD p-value is never below {floor:.4}, so at alpha = {} \
         its test could never alarm: use more than {:.0} permutations",
        cfg.n_permutations,
        cfg.alpha,
        1.0 / cfg.alpha - 1.0
    );
    Ok(())
}

/// The queue to the monitor's thread.
pub struct DriftFeed {
    tx: SyncSender<Vec<Request>>,
    metrics: DriftMetrics,
}

impl DriftFeed {
    /// Fits a monitor to `reference` and starts its thread, which publishes every
    /// check to `metrics` and `dashboard`. The thread ends when the feed is dropped.
    pub fn start(
        reference: &Reference,
        metrics: DriftMetrics,
        dashboard: Arc<Dashboard>,
    ) -> Result<DriftFeed> {
        let cfg = reference.monitor;
        check_settings(&cfg)?;
        let mut monitor = cfg.fit(reference.requests()?)?;
        metrics.alpha.set(cfg.alpha);
        for d in Detector::ALL {
            let threshold = match d {
                Detector::PsiConfidence => Some(cfg.psi_threshold),
                Detector::WassersteinInk => Some(monitor.w1_threshold()),
                _ => None,
            };
            if let Some(t) = threshold {
                metrics.threshold.get_or_create(&drift_labels(d)).set(t);
            }
            metrics.alarm.get_or_create(&drift_labels(d)).set(0);
        }
        dashboard.watch_drift(cfg, monitor.w1_threshold());
        let (tx, rx) = sync_channel::<Vec<Request>>(QUEUE);
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("drift".into())
            .spawn(move || {
                let count = |outcome: &str| {
                    m.requests
                        .get_or_create(&OutcomeLabels {
                            outcome: outcome.into(),
                        })
                        .inc()
                };
                let (mut told, mut seen) = (false, 0u64);
                for batch in rx {
                    for r in batch {
                        match monitor.observe(r) {
                            Ok(signals) => {
                                count("observed");
                                seen += 1;
                                if let Some(signals) = signals {
                                    publish(&m, &dashboard, seen, &signals);
                                }
                            }
                            Err(e) => {
                                count("rejected");
                                if !told {
                                    eprintln!("drift monitor: {e:#}");
                                    told = true;
                                }
                            }
                        }
                    }
                }
            })
            .context("starting the drift monitor's thread")?;
        Ok(DriftFeed { tx, metrics })
    }

    /// Hands `requests` to the monitor without waiting; when its queue is full they are
    /// dropped and counted. Returns whether they were queued.
    pub fn offer(&self, requests: Vec<Request>) -> bool {
        let n = requests.len() as u64;
        match self.tx.try_send(requests) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics
                    .requests
                    .get_or_create(&OutcomeLabels {
                        outcome: "dropped".into(),
                    })
                    .inc_by(n);
                false
            }
        }
    }
}

/// One check's signals into the gauges and the dashboard.
fn publish(m: &DriftMetrics, dashboard: &Dashboard, seen: u64, signals: &[Signal]) {
    m.checks.inc();
    for s in signals {
        let l = drift_labels(s.detector);
        m.score.get_or_create(&l).set(s.score);
        if let Some(p) = s.p_value {
            m.p_value.get_or_create(&l).set(p);
        }
        m.alarm.get_or_create(&l).set(i64::from(s.alarm));
    }
    dashboard.drift_check(seen, signals);
}

/// The monitor's settings `dlbook drift reference` writes unless told otherwise: a
/// window of 200 images checked every 25, tests at alpha = 0.01, the PSI on 10 bins
/// alarming above 0.2, 100 MMD permutations, 200 bootstrap windows for the
/// Wasserstein threshold.
pub fn default_monitor() -> MonitorConfig {
    MonitorConfig {
        window: 200,
        check_every: 25,
        alpha: 0.01,
        psi_bins: 10,
        psi_threshold: 0.2,
        n_permutations: 100,
        n_calibration: 200,
        seed: 0,
    }
}

/// The sha256 of the file `path`, in hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    crate::data::sha256_hex(f).with_context(|| format!("reading {}", path.display()))
}

/// The reference of the MNIST CNN in the file `model`: what the monitor keeps of its
/// answers to the first `n_images` MNIST test images, with the settings `monitor`
/// (checked by fitting a monitor to it).
pub fn mnist_reference(
    dir: &crate::data::DataDir,
    model: &Path,
    n_images: usize,
    monitor: MonitorConfig,
) -> Result<Reference> {
    let sha = file_sha256(model)?;
    let mut cnn = super::model::MnistCnn::load(model)?;
    let test = crate::data::idx::mnist(dir, crate::data::Split::Test)?;
    let available = test.images.pixels.len() / 784;
    ensure!(
        (1..=available).contains(&n_images),
        "asked for {n_images} reference images; the MNIST test set has {available}"
    );
    let pixels: Vec<f32> = test.images.pixels[..n_images * 784]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    let bar = crate::progress::spinner("the model's answers to the reference images");
    let requests = observe_all(&mut cnn, &pixels, n_images);
    bar.finish_and_clear();
    let r = Reference::new(&sha, monitor, &requests);
    check_settings(&monitor)?;
    monitor.fit(r.requests()?)?;
    Ok(r)
}
