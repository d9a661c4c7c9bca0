//! `dlbook bench --name detector`: chapter 7's single-stage detector, timed. Training
//! throughput (forward, multibox loss, backward, Adam step on a batch of canvases) in
//! canvases per second, and inference latency on one canvas (forward, decoding, NMS) in
//! milliseconds: median, min and max over the runs, with the load average before and
//! after; written to `generated/ch07/detector_speed.{json,md}` and never asserted by
//! tests.

use anyhow::Result;
use ndarray::{Axis, Ix3};
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::data::{DataDir, Dataset, Split};
use crate::detect::anchors::{all_anchors, dataset, MatchThresholds};
use crate::detect::canvas::{make_canvases, CanvasConfig};
use crate::detect::inference::{postprocess, InferenceConfig};
use crate::detect::multibox::MultiboxLoss;
use crate::detect::ssd::{Ssd, SsdConfig};
use crate::nn::{Layer, Mode, Module};
use crate::optim::{Adam, Optimizer};
use crate::progress;
use crate::report::Report;
use crate::train::Loss;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorBenchConfig {
    /// Canvases per training step.
    pub batch_size: usize,
    /// Training steps per timed run.
    pub steps: usize,
    /// Single-canvas inferences per timed run.
    pub inferences: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads.
    pub threads: usize,
}

impl DetectorBenchConfig {
    /// A run of seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        DetectorBenchConfig {
            batch_size: 4,
            steps: 1,
            inferences: 2,
            runs: 1,
            threads: 2,
        }
    }

    /// The figures in the book.
    pub fn full() -> Self {
        DetectorBenchConfig {
            batch_size: 32,
            steps: 10,
            inferences: 50,
            runs: 5,
            threads: 2,
        }
    }
}

/// Runs the benchmark on canvases built from MNIST test digits; the report is named
/// `name`.
pub fn run(cfg: &DetectorBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let digits = Dataset::mnist(dir, Split::Test, 1000)?;
    let canvas = CanvasConfig::default();
    let canvases = make_canvases(&digits, cfg.batch_size, &canvas, 0);
    let ssd_cfg = SsdConfig::default();
    let anchors = all_anchors(&ssd_cfg.grids());
    let data = dataset(&canvases, &anchors, MatchThresholds::default());
    let loss = MultiboxLoss {
        n_classes: ssd_cfg.n_classes,
        neg_ratio: 3,
        box_weight: 1.0,
    };
    let infer = InferenceConfig::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let spinner = progress::spinner("bench");
    let (train_s, infer_s) = pool.install(|| {
        let mut model = Ssd::new(&ssd_cfg, 0);
        let mut opt = Adam::new(1e-3);
        spinner.set_message("detector, training steps");
        let train_s = time_runs(cfg.runs, || {
            for _ in 0..cfg.steps {
                model.zero_grad();
                let y = model.forward(&data.x, Mode::Train);
                let (_, dy) = loss.loss(&y, &data.y);
                model.backward(&dy);
                opt.step(&mut model);
            }
        });
        spinner.set_message("detector, one-canvas inference");
        let one = data
            .x
            .index_axis(Axis(0), 0)
            .insert_axis(Axis(0))
            .to_owned();
        let infer_s = time_runs(cfg.runs, || {
            for _ in 0..cfg.inferences {
                let y = model.forward(&one, Mode::Eval);
                let y = y.into_dimensionality::<Ix3>().expect("(1, anchors, K + 5)");
                postprocess(
                    y.index_axis(Axis(0), 0),
                    &anchors,
                    0,
                    canvas.side as f32,
                    &infer,
                );
            }
        });
        (train_s, infer_s)
    });
    spinner.finish_and_clear();
    let per_s: Vec<f64> = train_s
        .iter()
        .map(|t| (cfg.steps * cfg.batch_size) as f64 / t)
        .collect();
    let latency: Vec<f64> = infer_s
        .iter()
        .map(|t| 1e3 * t / cfg.inferences as f64)
        .collect();
    let mut rep =
        Report::new("ch07", name, "The detector's training and inference speed");
    rep.config = serde_json::to_value(cfg)?;
    let caption = format!(
            "The detector of section 7.2 ({}x{} canvases, {} anchors), {} threads: training \
             (batch {}, forward, multibox loss, backward, Adam) and inference on one canvas \
             (forward, decoding, score threshold, NMS); median, min and max over {} runs. \
             Load average {load_before:.1} before, {:.1} after.",
            canvas.side,
            canvas.side,
            anchors.len(),
            cfg.threads,
            cfg.batch_size,
            cfg.runs,
            load_average()
        );
    let rows = vec![
        row("training", &per_s, "canvases/s"),
        row("inference, one canvas", &latency, "ms"),
    ];
    rep.tables.push(summary_table("speed", caption, 2, rows));
    Ok(rep)
}
