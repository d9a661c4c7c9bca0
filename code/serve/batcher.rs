//! Inference workers with micro-batching.
//!
//! Each worker thread owns its own copy of the model (a forward pass caches activations,
//! so one model cannot serve two threads at once), built inside the thread by a loader,
//! so a model need not be `Send`. Requests wait in one bounded queue. A
//! free worker takes the first request, then every request already waiting, up to
//! [`MAX_BATCH_IMAGES`] images, and runs them as one batch: at low load a request runs
//! alone at once (no timer adds latency), at high load the batches grow by themselves
//! and the per-image cost of the matrix products falls. A full queue is refused at once
//! (503) rather than left to grow: the client learns the server is saturated instead of
//! waiting.

use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, ensure, Result};
use tokio::sync::oneshot;

/// Builds one copy of the model (called once in each worker thread).
pub type Loader = Arc<dyn Fn() -> Result<Box<dyn Classifier>> + Send + Sync>;

/// The most images one forward pass takes.
pub const MAX_BATCH_IMAGES: usize = 256;

/// A model the server can run: rows of pixels in, rows of class probabilities out.
pub trait Classifier {
    /// The number of classes (the width of a probability row).
    fn n_classes(&self) -> usize;
    /// Probabilities `(n × n_classes)`, row-major, for `n` images of `pixels.len() / n`
    /// values each.
    fn predict(&mut self, pixels: &[f32], n: usize) -> Vec<f32>;
    /// The probabilities of [`Classifier::predict`] and, from the same forward pass, each
    /// image's embedding (`n × width`, row-major: what the drift monitor compares), or
    /// an empty vector for a model that has none (the default).
    fn predict_embedded(&mut self, pixels: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        (self.predict(pixels, n), Vec::new())
    }
}

/// A request's answer: one row of probabilities per image and, when the model has one,
/// one row of its embedding per image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// `n × n_classes` probabilities, row-major.
    pub probs: Vec<f32>,
    /// `n × width` embedding values, row-major (empty without an embedding).
    pub embedding: Vec<f32>,
}

/// One request's images and where its answer goes.
struct Job {
    pixels: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Answer>,
}

/// Why a request was not run.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Overloaded,
    /// The workers have stopped.
    Stopped,
}

/// The queue and its workers. Dropping the last handle closes the queue; the workers
/// finish what is queued and exit.
pub struct Batcher {
    tx: SyncSender<Job>,
    n_classes: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Batcher {
    /// Starts `workers` threads, each with the model `load` builds, and a queue of
    /// `queue` requests. Returns once every worker has its model; a model that fails to
    /// load (or copies that disagree on their number of classes) is an error, and no
    /// worker is left running.
    pub fn start(load: Loader, workers: usize, queue: usize) -> Result<Batcher> {
        Self::start_batching(load, workers, queue, MAX_BATCH_IMAGES)
    }

    /// [`Batcher::start`] with batches of at most `max_batch` images (a request larger
    /// than that still runs whole, alone); `max_batch = 1` runs one request per forward
    /// pass, which is what micro-batching is measured against.
    pub fn start_batching(
        load: Loader,
        workers: usize,
        queue: usize,
        max_batch: usize,
    ) -> Result<Batcher> {
        ensure!(workers >= 1, "a server needs at least one inference worker");
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = channel::<Result<usize, String>>();
        let mut handles = Vec::new();
        for i in 0..workers {
            let (rx, load, ready) =
                (Arc::clone(&rx), Arc::clone(&load), ready_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || match load() {
                    Ok(model) => {
                        let _ = ready.send(Ok(model.n_classes()));
                        drop(ready);
                        work(model, &rx, max_batch);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{e:#}")));
                    }
                })
                .map_err(|e| anyhow!("starting an inference thread: {e}"))?;
            handles.push(h);
        }
        drop(ready_tx);
        let mut classes = Vec::new();
        let mut failure = None;
        for r in ready_rx.iter().take(workers) {
            match r {
                Ok(k) => classes.push(k),
                Err(e) => failure = Some(e),
            }
        }
        let batcher = Batcher {
            tx,
            n_classes: classes.first().copied().unwrap_or(0),
            workers: handles,
        };
        if let Some(e) = failure {
            batcher.shutdown();
            return Err(anyhow!("loading the model: {e}"));
        }
        if classes.len() != workers || classes.iter().any(|&k| k != classes[0]) {
            batcher.shutdown();
            return Err(anyhow!(
                "the model copies disagree on their number of classes"
            ));
        }
        Ok(batcher)
    }

    /// The width of a probability row.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Queues `n` images; the answer arrives on the returned receiver.
    pub fn submit(
        &self,
        pixels: Vec<f32>,
        n: usize,
    ) -> Result<oneshot::Receiver<Answer>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { pixels, n, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(SubmitError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Closes the queue and waits for the workers to finish what it holds.
    pub fn shutdown(self) {
        let Batcher { tx, workers, .. } = self;
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
    }
}

// ANCHOR: work
/// A worker's loop: one request, then whatever else is waiting, as one batch.
fn work(mut model: Box<dyn Classifier>, rx: &Mutex<Receiver<Job>>, max_batch: usize) {
    loop {
        let mut jobs = Vec::new();
        {
            // Only one worker gathers at a time; the other runs its batch meanwhile.
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut images = first.n;
            jobs.push(first);
            while images < max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        images += job.n;
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        let n: usize = jobs.iter().map(|j| j.n).sum();
        let pixels: Vec<f32> = if jobs.len() == 1 {
            std::mem::take(&mut jobs[0].pixels)
        } else {
            jobs.iter().flat_map(|j| j.pixels.iter().copied()).collect()
        };
        // A model that panics fails this batch (its requests get an error answer when
        // their reply channels drop), not the worker.
        let k = model.n_classes();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            model.predict_embedded(&pixels, n)
        }));
        let Ok((probs, embedding)) = run else {
            continue;
        };
        if probs.len() != n * k {
            continue;
        }
        // An embedding that does not split into n rows is left out, not misassigned.
        let e = if embedding.len() % n.max(1) == 0 {
            embedding.len() / n.max(1)
        } else {
            0
        };
        let mut at = 0;
        for job in jobs {
            let answer = Answer {
                probs: probs[at * k..(at + job.n) * k].to_vec(),
                embedding: embedding[at * e..(at + job.n) * e].to_vec(),
            };
            at += job.n;
            // A client that gave up (timeout, closed connection) no longer listens.
            let _ = job.reply.send(answer);
        }
    }
}
// ANCHOR_END: work

#[cfg(test)]
mod tests {
    use super::*;

    /// Class = the index of the brightest of the first `k` pixels; probability 1 there.
    struct Brightest(usize);

    impl Classifier for Brightest {
        fn n_classes(&self) -> usize {
            self.0
        }
        fn predict(&mut self, pixels: &[f32], n: usize) -> Vec<f32> {
            let d = pixels.len() / n;
            let mut out = vec![0.0; n * self.0];
            for i in 0..n {
                let row = &pixels[i * d..i * d + self.0];
                let best = (0..self.0)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap();
                out[i * self.0 + best] = 1.0;
            }
            out
        }
    }

    #[test]
    fn every_request_gets_its_own_rows_back() {
        let b =
            Batcher::start(Arc::new(|| Ok(Box::new(Brightest(3)) as _)), 2, 64).unwrap();
        let mut waiting = Vec::new();
        for r in 0..40usize {
            // Request r: (r % 4) + 1 images, image i brightest at pixel (r + i) % 3.
            let n = r % 4 + 1;
            let mut px = vec![0.0f32; n * 5];
            for i in 0..n {
                px[i * 5 + (r + i) % 3] = 1.0;
            }
            waiting.push((r, n, b.submit(px, n).unwrap()));
        }
        for (r, n, rx) in waiting {
            let rows = rx.blocking_recv().unwrap().probs;
            assert_eq!(rows.len(), n * 3);
            for i in 0..n {
                assert_eq!(rows[i * 3 + (r + i) % 3], 1.0, "request {r}, image {i}");
            }
        }
        b.shutdown();
    }

    #[test]
    fn a_full_queue_is_refused_not_queued() {
        struct Slow;
        impl Classifier for Slow {
            fn n_classes(&self) -> usize {
                1
            }
            fn predict(&mut self, _: &[f32], n: usize) -> Vec<f32> {
                std::thread::sleep(std::time::Duration::from_millis(200));
                vec![1.0; n]
            }
        }
        let b = Batcher::start(Arc::new(|| Ok(Box::new(Slow) as _)), 1, 2).unwrap();
        let mut results = Vec::new();
        for _ in 0..10 {
            results.push(b.submit(vec![0.0], 1));
        }
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(SubmitError::Overloaded))));
        assert!(results.iter().any(|r| r.is_ok()));
        b.shutdown();
    }

    #[test]
    fn a_model_that_fails_to_load_is_an_error_at_start() {
        let e = Batcher::start(Arc::new(|| Err(anyhow!("no such file"))), 2, 4)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("no such file"), "{e:#}");
    }
}
