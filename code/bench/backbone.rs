//! `dlbook bench --name backbone`: EfficientNet-Lite0's forward pass (ImageNet weights,
//! inference mode, pooled features and logits) in images per second, from scratch and in
//! candle in the same run, at the input sides chapter 6 uses (32 pixels for the learning
//! curve, 224 for the photos) and at batch 1 and a larger batch. Median, min and max over
//! the runs, with the load average before and after; written to
//! `generated/ch06/backbone.{json,md}` and never asserted by tests.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::data::DataDir;
use crate::models::candle_efficientnet::CandleEfficientNet;
use crate::models::efficientnet::{
    efficientnet_lite0, load_imagenet, load_state_dict, CLASSES,
};
use crate::nn::gradcheck::normal;
use crate::nn::{Layer, Mode};
use crate::progress;
use crate::report::Report;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneConfig {
    /// `(input side, batch size)` pairs.
    pub cases: Vec<(usize, usize)>,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads for the from-scratch network (candle uses its own pool).
    pub threads: usize,
    /// Seed of the random input images.
    pub seed: u64,
}

impl BackboneConfig {
    /// A run of seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        BackboneConfig {
            cases: vec![(32, 1), (32, 2)],
            runs: 1,
            threads: 2,
            seed: 0,
        }
    }

    /// The figures in the book.
    pub fn full() -> Self {
        BackboneConfig {
            cases: vec![(32, 1), (32, 64), (224, 1), (224, 16)],
            runs: 3,
            threads: 2,
            seed: 0,
        }
    }
}

/// Runs the benchmark; the report is named `name`.
pub fn run(cfg: &BackboneConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let state = load_state_dict(dir)?;
    let twin = CandleEfficientNet::new(&state, DType::F32)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let spinner = progress::spinner("bench");
    let mut rows = vec![];
    for &(side, batch) in &cfg.cases {
        let x = normal(&[batch, 3, side, side], &mut rng);
        spinner.set_message(format!("from scratch, {side} px, batch {batch}"));
        // The network lives on the benchmark's pool (a `Layer` stays on its thread).
        let ours = pool.install(|| -> Result<Vec<f64>> {
            let mut net = efficientnet_lite0(CLASSES, 0);
            load_imagenet(&mut net, &state, true)?;
            Ok(time_runs(cfg.runs, || {
                net.forward(&x, Mode::Eval);
            }))
        })?;
        spinner.set_message(format!("candle, {side} px, batch {batch}"));
        let t = Tensor::from_vec(
            x.iter().copied().collect::<Vec<_>>(),
            x.shape(),
            &Device::Cpu,
        )?;
        let mut err = None;
        let theirs = time_runs(cfg.runs, || {
            if let Err(e) = twin.forward(&t) {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let per_s = |secs: Vec<f64>| -> Vec<f64> {
            secs.iter().map(|s| batch as f64 / s).collect()
        };
        let (ours, theirs) = (per_s(ours), per_s(theirs));
        rows.push(row(
            &format!("from scratch, {side} x {side}, batch {batch}"),
            &ours,
            "images/s",
        ));
        rows.push(row(
            &format!("candle, {side} x {side}, batch {batch}"),
            &theirs,
            "images/s",
        ));
    }
    spinner.finish_and_clear();
    let mut rep = Report::new(
        "ch06",
        name,
        "EfficientNet-Lite0 forward: from scratch and candle",
    );
    rep.config = serde_json::to_value(cfg)?;
    let caption = format!(
        "EfficientNet-Lite0 with the ImageNet weights, inference (logits of random \
         images), images per second: median, min and max over {} runs, {} threads for \
         the from-scratch network, candle on its own thread pool. Load average \
         {load_before:.1} before, {:.1} after.",
        cfg.runs,
        cfg.threads,
        load_average()
    );
    rep.tables.push(summary_table("backbone", caption, 1, rows));
    Ok(rep)
}
