//! Experiment `mobile_blocks`: parameters and multiply-adds of EfficientNet-Lite0 at
//! 224 x 224, block by block and by kind of layer, against the same network with a
//! full `k x k` convolution in place of every depthwise one.
//!
//! Everything is counted from the network's description
//! ([`lite0_spec`]) by
//! [`models::count`](crate::models::count), which explains what is counted (batch
//! norm: $\gamma$ and $\beta$, as in PyTorch's parameter count; multiply-adds: the
//! convolutions and the dense layer). Nothing is random, so there is one preset.

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::models::count::{count, thousands, totals, LayerCount, Shape};
use crate::models::mbconv::{lite0_blocks, lite0_spec};
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `mobile_blocks`, registered in [`super::all`].
pub struct MobileBlocks;

impl Experiment for MobileBlocks {
    const NAME: &'static str = "mobile_blocks";
    const CHAPTER: &'static str = "ch06";
    const TITLE: &'static str =
        "EfficientNet-Lite0: parameters and multiply-adds by block and by layer kind";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// What to count: the input of one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The image shape `(c, h, w)`.
    pub input: Shape,
}

impl Preset for Config {
    /// The only preset (the experiment only counts): a 224 x 224 colour image.
    fn full() -> Self {
        Config {
            input: (3, 224, 224),
        }
    }
}

// ANCHOR: layer_kind
/// The kind of a layer of EfficientNet-Lite0, from its state-dict name.
pub fn layer_kind(name: &str) -> &'static str {
    let last = name.rsplit('.').next().unwrap_or(name);
    match last {
        "_conv_stem" => "stem 3x3 convolution",
        "_expand_conv" => "expansion 1x1",
        "_depthwise_conv" => "depthwise k x k",
        "_project_conv" => "projection 1x1",
        "_conv_head" => "head 1x1",
        "_fc" => "classifier (dense)",
        n if n.starts_with("_bn") => "batch norm",
        _ => "pooling",
    }
}
// ANCHOR_END: layer_kind

/// The kinds in table order.
pub const KINDS: [&str; 7] = [
    "stem 3x3 convolution",
    "expansion 1x1",
    "depthwise k x k",
    "projection 1x1",
    "head 1x1",
    "classifier (dense)",
    "batch norm",
];

/// `(parameters, multiply-adds)` of the layers of `counts` whose name satisfies `keep`.
pub fn sum_where(counts: &[LayerCount], keep: impl Fn(&str) -> bool) -> (usize, usize) {
    counts
        .iter()
        .filter(|l| keep(&l.name))
        .fold((0, 0), |(p, m), l| (p + l.params, m + l.macs))
}

/// The counts of the network (`standard = false`) and of its standard-convolution
/// equivalent (`true`), for `input`.
pub fn lite0_counts(input: Shape) -> (Vec<LayerCount>, Vec<LayerCount>) {
    (count(input, &lite0_spec(false)), count(input, &lite0_spec(true)))
}

fn int(n: usize) -> Value {
    Value::from(thousands(n))
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    let (dw, std) = lite0_counts(cfg.input);
    let (p, m) = totals(&dw);
    let (ps, ms) = totals(&std);
    // Per block, and the stem and head around them.
    let mut rows = vec![];
    let mut push = |name: String, what: String, prefix: &dyn Fn(&str) -> bool| {
        let (bp, bm) = sum_where(&dw, prefix);
        let (sp, sm) = sum_where(&std, prefix);
        let out = dw
            .iter()
            .rev()
            .find(|l| prefix(&l.name))
            .map_or((0, 0, 0), |l| l.out);
        rows.push(vec![
            Value::from(name),
            Value::from(what),
            Value::from(format!("{} x {} x {}", out.0, out.1, out.2)),
            int(bp),
            int(bm),
            int(sp),
            int(sm),
            Value::Num(sm as f64 / bm.max(1) as f64),
        ]);
    };
    let stem = |n: &str| n == "_conv_stem" || n == "_bn0";
    push("stem".into(), "3x3 s2, 3 -> 32".into(), &stem);
    for (i, b) in lite0_blocks().iter().enumerate() {
        let pre = format!("_blocks.{i}.");
        let what = format!(
            "k{} s{} e{}, {} -> {}",
            b.kernel, b.stride, b.expand_ratio, b.c_in, b.c_out
        );
        push(format!("_blocks.{i}"), what, &|n: &str| n.starts_with(&pre));
    }
    let head = |n: &str| matches!(n, "_conv_head" | "_bn1" | "_avg_pooling" | "_fc");
    push("head".into(), "1x1 320 -> 1280, fc -> 1000".into(), &head);
    rows.push(vec![
        "total".into(),
        "".into(),
        "".into(),
        int(p),
        int(m),
        int(ps),
        int(ms),
        Value::Num(ms as f64 / m as f64),
    ]);
    r.tables.push(Table {
        name: "blocks".into(),
        caption: "EfficientNet-Lite0 on one 224 x 224 image, block by block (each with \
                  its batch norms): parameters and multiply-adds, and the same for the \
                  standard-convolution equivalent (a full k x k convolution in place of \
                  the depthwise one). The last column is how many times more \
                  multiply-adds the standard block needs."
            .into(),
        columns: vec![
            col("block", Format::Int),
            col("k, stride, expansion, channels", Format::Int),
            col("output (c x h x w)", Format::Int),
            col("parameters", Format::Int),
            col("multiply-adds", Format::Int),
            col("parameters (standard)", Format::Int),
            col("multiply-adds (standard)", Format::Int),
            col("x more (standard)", Format::Fixed(1)),
        ],
        rows,
    });
    // Per kind of layer.
    let mut rows = vec![];
    for kind in KINDS {
        let (kp, km) = sum_where(&dw, |n| layer_kind(n) == kind);
        rows.push(vec![
            Value::from(kind),
            int(kp),
            Value::Num(kp as f64 / p as f64),
            int(km),
            Value::Num(km as f64 / m as f64),
        ]);
    }
    r.tables.push(Table {
        name: "kinds".into(),
        caption: "Where EfficientNet-Lite0's parameters and multiply-adds are, by kind of \
                  layer (224 x 224 input)."
            .into(),
        columns: vec![
            col("layer kind", Format::Int),
            col("parameters", Format::Int),
            col("share", Format::Percent(1)),
            col("multiply-adds", Format::Int),
            col("share", Format::Percent(1)),
        ],
        rows,
    });
    let share = |kind: &str| {
        let (kp, km) = sum_where(&dw, |n| layer_kind(n) == kind);
        (kp as f64 / p as f64, km as f64 / m as f64)
    };
    // As text: the JSON keeps numbers to six significant digits.
    r.fact("params", thousands(p), Format::Int);
    r.fact("params_m", p as f64 / 1e6, Format::Fixed(2));
    r.fact("gmacs", m as f64 / 1e9, Format::Fixed(3));
    r.fact("standard_params_m", ps as f64 / 1e6, Format::Fixed(2));
    r.fact("standard_gmacs", ms as f64 / 1e9, Format::Fixed(2));
    r.fact("standard_mac_ratio", ms as f64 / m as f64, Format::Fixed(1));
    r.fact("depthwise_mac_share", share("depthwise k x k").1, Format::Percent(1));
    let (_, e) = share("expansion 1x1");
    let (_, pr) = share("projection 1x1");
    let (_, hd) = share("head 1x1");
    r.fact("pointwise_mac_share", e + pr + hd, Format::Percent(1));
    r.fact("classifier_param_share", share("classifier (dense)").0, Format::Percent(1));
    Ok(())
}
