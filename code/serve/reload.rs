//! Serving a registered model: load the version an alias (`production`) points at, watch
//! the alias, and swap in each new version without dropping a request.
//!
//! A [`Reloader`] polls the registry. When the alias points at a version other than the
//! one served, it fetches that version's artifact, starts a new [`Batcher`] on it (every
//! worker loads its copy before the swap) and hands it to [`AppState::deploy`]: requests
//! already queued finish on the old model, new ones go to the new one, and no request
//! waits on a model that is still loading. A version that fails to load (a corrupt or
//! missing artifact) changes nothing: the old model keeps serving, the failure is logged
//! as one JSON line and counted in `dlbook_model_reloads_total{outcome="failed"}`, and
//! that version is not tried again until the alias moves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::batcher::{Batcher, Classifier, Loader};
use super::metrics::ReloadLabels;
use super::model::MnistCnn;
use super::{AppState, Deployed};
use crate::mlops::registry::{ModelVersion, Registry};

/// Which registered model to serve, and how.
#[derive(Clone, Debug)]
pub struct Source {
    /// The registry.
    pub registry: Registry,
    /// The registered model's name.
    pub model: String,
    /// The alias to follow (`production`).
    pub alias: String,
    /// The name in the route `/v1/models/{name}/predict`.
    pub served_name: String,
    /// Inference threads per loaded model.
    pub workers: usize,
    /// Queue length of each loaded model.
    pub queue: usize,
    /// Where artifacts downloaded from a server are kept.
    pub cache: PathBuf,
}

/// What one poll did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The alias still points at the version served (or at one that failed before).
    Unchanged,
    /// A new version is being served.
    Deployed(u64),
    /// The alias points at a version that did not load; the old one is still served.
    Failed(u64, String),
    /// The registry could not be read; nothing changed.
    Unreachable(String),
}

/// Polls an alias and deploys the versions it points at.
pub struct Reloader {
    source: Source,
    state: AppState,
    serving: Option<u64>,
    failed: Option<u64>,
}

/// A batcher of the MNIST CNN in the artifact of `version`.
pub fn load_version(source: &Source, version: &ModelVersion) -> Result<Batcher> {
    let path = source
        .registry
        .artifact(version, &source.cache)
        .with_context(|| {
            format!("fetching version {} of {}", version.version, version.name)
        })?;
    let load: Loader = Arc::new(move || {
        MnistCnn::load(&path).map(|m| Box::new(m) as Box<dyn Classifier>)
    });
    Batcher::start(load, source.workers, source.queue).with_context(|| {
        format!("loading version {} of {}", version.version, version.name)
    })
}

impl Reloader {
    /// A reloader that deploys into `state`; nothing is loaded until [`Reloader::poll`].
    pub fn new(source: Source, state: AppState) -> Reloader {
        Reloader {
            source,
            state,
            serving: None,
            failed: None,
        }
    }

    /// The version being served, if any.
    pub fn serving(&self) -> Option<u64> {
        self.serving
    }

    /// Reads the alias and, if it moved, loads and deploys its version.
    pub fn poll(&mut self) -> Outcome {
        let s = &self.source;
        let version = match s.registry.version_by_alias(&s.model, &s.alias) {
            Ok(v) => v,
            Err(e) => return Outcome::Unreachable(format!("{e:#}")),
        };
        let n = version.version;
        if Some(n) == self.serving || Some(n) == self.failed {
            return Outcome::Unchanged;
        }
        let count = |outcome: &str| {
            self.state
                .metrics()
                .reloads
                .get_or_create(&ReloadLabels {
                    version: n.to_string(),
                    outcome: outcome.into(),
                })
                .inc();
        };
        match load_version(s, &version) {
            Ok(batcher) => {
                self.state
                    .deploy(Deployed::new(&s.served_name, n.to_string(), batcher));
                count("ok");
                eprintln!(
                    "{}",
                    json!({
                        "event": "model_deployed", "model": s.model, "alias": s.alias,
                        "version": n, "run_id": version.run_id,
                        "git_commit": version.git_commit(),
                    })
                );
                self.serving = Some(n);
                self.failed = None;
                Outcome::Deployed(n)
            }
            Err(e) => {
                let msg = format!("{e:#}");
                count("failed");
                eprintln!(
                    "{}",
                    json!({
                        "event": "model_reload_failed", "model": s.model, "alias": s.alias,
                        "version": n, "error": msg,
                        "serving": self.serving,
                    })
                );
                self.failed = Some(n);
                Outcome::Failed(n, msg)
            }
        }
    }

    /// Polls every `interval` on a thread of its own until `stop` is set.
    pub fn spawn(
        mut self,
        interval: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Outcome::Unreachable(e) = self.poll() {
                        eprintln!(
                            "{}",
                            json!({"event": "registry_unreachable", "error": e})
                        );
                    }
                    std::thread::sleep(interval);
                }
            })
            .context("starting the reload thread")
    }
}
