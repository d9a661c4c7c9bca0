//! Experiment `receptive_fields`: how far each layer of a CNN sees, by the recurrence of
//! [`crate::cnn::receptive`], measured with impulses on real layers, and drawn on an
//! MNIST digit.
//!
//! Deterministic (no training, no seeds). The report holds the per-layer jump and field
//! size of the seed model's convolution and pooling layers, the growth of the field
//! with depth for three kinds of stack, the weights $n$ stacked $3\times3$ layers need
//! for the field one large kernel sees, and a figure: the measured field of one unit of
//! each layer over a real test digit (a centre unit and a corner unit of the seed stack,
//! and a corner unit of the same stack with padding 1, whose field is clipped).

use anyhow::Result;
use ndarray::Array2;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::cnn::receptive::{
    impulse_fields, measured_mask, probe, receptive_fields, stack_weights, Window,
};
use crate::data::{data_ref, mnist_files, DataDir, Dataset, Split};
use crate::models::mnist_cnn::{model_windows, seed_windows, CnnConfig, Downsample};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `receptive_fields`, registered in [`super::all`].
pub struct ReceptiveFields;

impl Experiment for ReceptiveFields {
    const NAME: &'static str = "receptive_fields";
    const CHAPTER: &'static str = "ch04";
    const TITLE: &'static str = "Receptive fields of CNN layers: the recurrence, measured, and drawn on a digit";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run (both presets are the same: the experiment is cheap and deterministic).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Input side in pixels (MNIST: 28).
    pub side: usize,
    /// Channels of the convolutions of the measuring stack.
    pub channels: usize,
    /// Layers of each stack in the growth figure.
    pub depth: usize,
    /// Channels in and out for the weight count of stacked vs single kernels.
    pub weight_channels: usize,
    /// The digit drawn under the fields (its first test image).
    pub digit: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            side: 28,
            channels: 2,
            depth: 8,
            weight_channels: 64,
            digit: 3,
        }
    }

    /// The same: the experiment takes a second.
    fn quick() -> Self {
        Self::full()
    }
}

/// The variants of the seed model whose fields the report compares.
pub fn variants() -> Vec<CnnConfig> {
    let seed = CnnConfig::default();
    vec![
        seed,
        CnnConfig {
            downsample: Downsample::StridedConv,
            ..seed
        },
        CnnConfig { n_conv: 1, ..seed },
    ]
}

/// The three stacks of the growth figure, `depth` layers each.
pub fn growth_stacks(depth: usize) -> Vec<(String, Vec<Window>)> {
    let pool = Window::MaxPool {
        kernel: 2,
        stride: 2,
    };
    vec![
        (
            "3x3 convs, stride 1".into(),
            vec![Window::conv(3, 1, 1); depth],
        ),
        (
            "3x3 conv and 2x2/2 pool, alternating".into(),
            (0..depth)
                .map(|l| {
                    if l % 2 == 0 {
                        Window::conv(3, 1, 1)
                    } else {
                        pool
                    }
                })
                .collect(),
        ),
        (
            "3x3 convs, stride 2".into(),
            vec![Window::conv(3, 2, 1); depth],
        ),
    ]
}

/// `digit` as grey levels with `mask` shaded: inside the field the digit is drawn in
/// full on a grey background, outside it is faint.
fn overlay(digit: &[f32], mask: &Array2<bool>) -> Vec<u8> {
    let side = mask.nrows();
    (0..side * side)
        .map(|p| {
            let v = digit[p];
            let level = if mask[[p / side, p % side]] {
                70.0 + 185.0 * v
            } else {
                60.0 * v
            };
            level.round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let test = Dataset::mnist(dir, Split::Test, 10_000)?;
    let (vi, vl) = mnist_files(Split::Test);
    r.data = vec![data_ref(vi), data_ref(vl)];

    // The seed model's layers.
    let seed = seed_windows(0);
    let stack: Vec<Window> = seed.iter().map(|(_, w)| *w).collect();
    let fields = receptive_fields(&stack, cfg.side);
    let mut rows = vec![vec![
        Value::from("input"),
        Value::from("–"),
        (cfg.side as f64).into(),
        1.0.into(),
        1.0.into(),
        0.0.into(),
    ]];
    for ((name, w), f) in seed.iter().zip(&fields) {
        rows.push(vec![
            Value::from(name.as_str()),
            Value::from(w.name()),
            (f.units as f64).into(),
            (f.jump as f64).into(),
            (f.size as f64).into(),
            f.centre(0).into(),
        ]);
    }
    let last = fields.last().expect("a non-empty stack");
    r.fact("seed_field", last.size as f64, Format::Int);
    r.fact("seed_jump", last.jump as f64, Format::Int);
    r.tables.push(Table {
        name: "seed".into(),
        caption: format!(
            "The convolution and pooling layers of the seed CNN on a {0}x{0} input: \
             units per side, jump j (input pixels between neighbouring units), field \
             size r, and the input position unit 0 is centred on. The ReLUs, the \
             flatten and the dense layers do not change the field; the dense layers \
             see every pixel.",
            cfg.side
        ),
        columns: vec![
            col("layer", Format::Int),
            col("window", Format::Int),
            col("units per side", Format::Int),
            col("jump j", Format::Int),
            col("field r", Format::Int),
            col("centre of unit 0", Format::Fixed(1)),
        ],
        rows,
    });

    // The variants of the seed model.
    let mut rows = vec![];
    for (k, v) in variants().iter().enumerate() {
        let windows = model_windows(v, 0);
        let stack: Vec<Window> = windows.iter().map(|(_, w)| *w).collect();
        let f = *receptive_fields(&stack, cfg.side).last().expect("layers");
        let names: Vec<String> = windows.iter().map(|(_, w)| w.name()).collect();
        r.fact(&format!("variant_field_{k}"), f.size as f64, Format::Int);
        rows.push(vec![
            Value::from(v.name()),
            Value::from(names.join(", ")),
            (f.units as f64).into(),
            (f.jump as f64).into(),
            (f.size as f64).into(),
        ]);
    }
    r.tables.push(Table {
        name: "variants".into(),
        caption: "The last convolutional or pooling layer of the seed CNN and of two \
                  variants chapter 5 trains: units per side, jump and field size."
            .into(),
        columns: vec![
            col("model", Format::Int),
            col("window layers", Format::Int),
            col("units per side", Format::Int),
            col("jump j", Format::Int),
            col("field r", Format::Int),
        ],
        rows,
    });

    // n stacked 3x3 convolutions against one (2n+1)x(2n+1) kernel.
    let c = cfg.weight_channels;
    let mut rows = vec![];
    for n in 1..=4 {
        let r_n = receptive_fields(&vec![Window::conv(3, 1, 1); n], cfg.side)[n - 1].size;
        let (stacked, single) = (stack_weights(n, 3, c), stack_weights(1, r_n, c));
        rows.push(vec![
            Value::from(format!("{n} × 3x3")),
            (r_n as f64).into(),
            (stacked as f64).into(),
            Value::from(format!("1 × {r_n}x{r_n}")),
            (single as f64).into(),
            (stacked as f64 / single as f64).into(),
        ]);
    }
    r.tables.push(Table {
        name: "stacked_vs_single".into(),
        caption: format!(
            "Weights (no biases) of n stacked 3x3 convolutions and of one convolution \
             with the same field, {c} channels in and out."
        ),
        columns: vec![
            col("stack", Format::Int),
            col("field", Format::Int),
            col("weights", Format::Int),
            col("single kernel", Format::Int),
            col("weights", Format::Int),
            col("ratio", Format::Fixed(2)),
        ],
        rows,
    });

    // Growth with depth.
    let series = growth_stacks(cfg.depth)
        .into_iter()
        .map(|(name, st)| Series {
            name,
            x: (1..=cfg.depth).map(|l| l as f64).collect(),
            y: receptive_fields(&st, 1 << 12)
                .iter()
                .map(|f| f.size as f64)
                .collect(),
            band: None,
        })
        .collect();
    r.figures.push(Figure {
        name: "growth".into(),
        title: "Receptive field size after each layer".into(),
        plot: Plot::Lines {
            x_label: "layers".into(),
            y_label: "field r (pixels per side)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            series,
        },
    });

    // The measured field of one unit per layer, over a digit.
    let i = test
        .labels()
        .iter()
        .position(|&y| y == cfg.digit)
        .unwrap_or(0);
    let digit: Vec<f32> = test.flat().row(i).to_vec();
    let mut images = vec![];
    let mut row_labels = vec![];
    for (label, padding, centre) in [
        ("centre unit", 0, true),
        ("unit (0, 0)", 0, false),
        ("pad 1, unit (0, 0)", 1, false),
    ] {
        let windows = seed_windows(padding);
        let stack: Vec<Window> = windows.iter().map(|(_, w)| *w).collect();
        let mut net = probe(&stack, cfg.channels);
        let measured = impulse_fields(&mut net, cfg.side);
        row_labels.push(label.to_string());
        for (_, m) in &measured {
            let u = if centre { m.shape()[1] / 2 } else { 0 };
            images.push(overlay(&digit, &measured_mask(m, u, u, cfg.side)));
        }
    }
    r.figures.push(Figure {
        name: "digit".into(),
        title: format!(
            "Measured receptive field of one unit per layer over a test digit {}",
            cfg.digit
        ),
        plot: Plot::Images {
            width: cfg.side,
            height: cfg.side,
            row_labels,
            col_labels: seed.iter().map(|(n, _)| n.clone()).collect(),
            images,
        },
    });
    Ok(())
}
