//! Experiment `pretrained_photos`: the proof that the weights are ImageNet's.
//!
//! The from-scratch EfficientNet-Lite0, with the weights read from the PyTorch file,
//! classifies four photos that ship with scikit-image (a cat, a cup of coffee, an
//! astronaut, a rocket launch): the five most probable of the 1000 ImageNet classes for
//! each. The candle twin, with the same weights, computes the same logits; the largest
//! difference is a fact of the report.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ndarray::{Axis, Ix2};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::image::{read_rgb, resize_and_center_crop, to_chw};
use crate::data::imagenet::imagenet_classes;
use crate::data::DataDir;
use crate::models::candle_efficientnet::CandleEfficientNet;
use crate::models::efficientnet::{
    efficientnet_lite0, load_imagenet, load_state_dict, normalize, CLASSES, TRAIN_SIZE,
};
use crate::nn::{Layer, Mode};
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `pretrained_photos`, registered in [`super::all`].
pub struct PretrainedPhotos;

impl Experiment for PretrainedPhotos {
    const NAME: &'static str = "pretrained_photos";
    const CHAPTER: &'static str = "ch06";
    const TITLE: &'static str = "EfficientNet-Lite0 with ImageNet weights on four photos";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The photos (catalog paths) and what they show.
    pub photos: Vec<(String, String)>,
    /// Classes listed per photo.
    pub top: usize,
    /// Input side (the training resolution).
    pub size: usize,
    /// Shorter side before the centre crop, as a fraction: the crop keeps `size /
    /// crop_fraction` pixels' worth.
    pub crop_fraction: f32,
}

impl Preset for Config {
    /// The book's configuration (also the tests': it runs in seconds).
    fn full() -> Self {
        let p = |f: &str, what: &str| (format!("photos/{f}"), what.to_string());
        Config {
            photos: vec![
                p("chelsea.png", "a tabby cat"),
                p("coffee.png", "a cup of coffee"),
                p("astronaut.png", "astronaut Eileen Collins"),
                p("rocket.jpg", "a rocket launch"),
            ],
            top: 5,
            size: TRAIN_SIZE,
            crop_fraction: 0.875,
        }
    }
}

/// Softmax of one row of logits.
fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = z.iter().map(|&v| f64::from(v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let names = imagenet_classes(dir)?;
    let mut inputs = vec![];
    for (path, _) in &cfg.photos {
        let img = read_rgb(&dir.verified(path)?)?;
        let x = resize_and_center_crop(
            &to_chw(&img.view()).view(),
            cfg.size,
            cfg.crop_fraction,
        );
        inputs.push(x.mapv(normalize));
        r.data.push(crate::data::data_ref(path));
    }
    r.data.push(crate::data::data_ref(
        crate::models::efficientnet::WEIGHTS_FILE,
    ));
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let x = ndarray::stack(Axis(0), &views)?.into_dyn();
    let state = load_state_dict(dir)?;
    let mut net = efficientnet_lite0(CLASSES, 0);
    load_imagenet(&mut net, &state, true)?;
    let ours = net.forward(&x, Mode::Eval).into_dimensionality::<Ix2>()?;
    let twin = CandleEfficientNet::new(&state, DType::F32)?;
    let t = Tensor::from_vec(
        x.iter().copied().collect::<Vec<_>>(),
        x.shape(),
        &Device::Cpu,
    )?;
    let theirs: Vec<f32> = twin.forward(&t)?.flatten_all()?.to_vec1()?;
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    r.fact("max_logit_diff", f64::from(diff), Format::Sci(1));
    let mut rows = vec![];
    for ((path, what), z) in cfg.photos.iter().zip(ours.axis_iter(Axis(0))) {
        let p = softmax(z.as_slice().expect("a row of a standard-layout array"));
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        for (rank, &k) in idx[..cfg.top].iter().enumerate() {
            let short = names[k]
                .split(',')
                .next()
                .unwrap_or(&names[k])
                .trim()
                .to_string();
            rows.push(vec![
                Value::Text(if rank == 0 {
                    format!("{what} (`{}`)", path.trim_start_matches("photos/"))
                } else {
                    String::new()
                }),
                Value::Num((rank + 1) as f64),
                Value::Text(format!("{short} ({k})")),
                Value::Num(p[k]),
            ]);
        }
        let stem = path
            .trim_start_matches("photos/")
            .split('.')
            .next()
            .unwrap_or(path);
        r.fact(&format!("{stem}_top1_prob"), p[idx[0]], Format::Percent(1));
    }
    r.tables.push(Table {
        name: "top5".into(),
        caption: format!(
            "The {} most probable ImageNet classes (class index in brackets) for each \
             photo, resized to a shorter side of {:.0} and centre-cropped to {}x{}, by the \
             from-scratch EfficientNet-Lite0 with the ImageNet weights.",
            cfg.top,
            cfg.size as f32 / cfg.crop_fraction,
            cfg.size,
            cfg.size
        ),
        columns: vec![
            col("photo", Format::Int),
            col("rank", Format::Int),
            col("class", Format::Int),
            col("probability", Format::Percent(1)),
        ],
        rows,
    });
    Ok(())
}
