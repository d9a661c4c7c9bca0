//! Experiment `architectures`: parameters and multiply-adds of LeNet-5, the seed CNN,
//! the small VGG, the small ResNet and, for scale, AlexNet at 224x224.
//!
//! Each architecture is counted from its description with
//! [`models::count`](crate::models::count), which explains what is counted. The
//! networks the book builds are also built, and their [`Module::n_params`] is reported
//! next to the count from the description (the tests check that the two agree).
//! AlexNet is a description only: the two-GPU layout of the paper, where conv2, conv4
//! and conv5 see only the half of the channels on their own GPU (two groups).

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::models::count::{
    alexnet_spec, count, layer_table, lenet5_spec, resnet_spec, seed_cnn_spec,
    small_vgg_spec, thousands, totals, Shape, Spec,
};
use crate::models::lenet::lenet5;
use crate::models::resnet::{resnet, ResNetConfig};
use crate::models::vgg::small_vgg;
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::{Module, Named};
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `architectures`, registered in [`super::all`].
pub struct Architectures;

impl Experiment for Architectures {
    const NAME: &'static str = "architectures";
    const CHAPTER: &'static str = "ch05";
    const TITLE: &'static str = "Parameters and multiply-adds per architecture";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// One architecture of the table.
pub struct Arch {
    /// Row name.
    pub name: &'static str,
    /// Input shape of one example.
    pub input: Shape,
    /// Its description.
    pub spec: Vec<(String, Spec)>,
    /// The network as the book builds it (none for AlexNet).
    pub built: Option<Named>,
}

/// The architectures of the table, in order.
pub fn architectures() -> Vec<Arch> {
    let mnist = (1, 28, 28);
    let small = ResNetConfig::small();
    vec![
        Arch {
            name: "LeNet-5",
            input: mnist,
            spec: lenet5_spec(),
            built: Some(lenet5(0)),
        },
        Arch {
            name: "seed CNN",
            input: mnist,
            spec: seed_cnn_spec(),
            built: Some(mnist_cnn(&CnnConfig::default(), 0)),
        },
        Arch {
            name: "small VGG",
            input: mnist,
            spec: small_vgg_spec(),
            built: Some(small_vgg(0)),
        },
        Arch {
            name: "small ResNet",
            input: mnist,
            spec: resnet_spec(&small),
            built: Some(resnet(&small, 0)),
        },
        Arch {
            name: "AlexNet",
            input: (3, 224, 224),
            spec: alexnet_spec(),
            built: None,
        },
    ]
}

/// What to run: nothing random, so one configuration for both tiers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The small ResNet of the table.
    pub small_resnet: ResNetConfig,
}

impl Preset for Config {
    /// The only preset (both tiers: the experiment only counts).
    fn full() -> Self {
        Config {
            small_resnet: ResNetConfig::small(),
        }
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(_cfg: &Config, r: &mut Report) -> Result<()> {
    let mut rows = vec![];
    for mut a in architectures() {
        let counts = count(a.input, &a.spec);
        let (p, m) = totals(&counts);
        let built = a.built.as_mut().map(|n| n.n_params());
        let weighted = a
            .spec
            .iter()
            .map(|(_, s)| match s {
                Spec::Conv { .. } | Spec::Linear { .. } => 1,
                Spec::Block { .. } => 2,
                _ => 0,
            })
            .sum::<usize>();
        let (c, h, w) = a.input;
        rows.push(vec![
            Value::from(a.name),
            Value::from(format!("{c} x {h} x {w}")),
            Value::Num(weighted as f64),
            Value::from(thousands(p)),
            Value::from(built.map_or("–".to_string(), thousands)),
            Value::from(thousands(m)),
        ]);
        if a.name == "AlexNet" {
            let conv_params: usize = counts
                .iter()
                .filter(|l| l.name.starts_with("conv"))
                .map(|l| l.params)
                .sum();
            let conv_macs: usize = counts
                .iter()
                .filter(|l| l.name.starts_with("conv"))
                .map(|l| l.macs)
                .sum();
            r.fact("alexnet_params_m", p as f64 / 1e6, Format::Fixed(1));
            r.fact("alexnet_gmacs", m as f64 / 1e9, Format::Fixed(2));
            r.fact(
                "alexnet_fc_param_share",
                1.0 - conv_params as f64 / p as f64,
                Format::Percent(1),
            );
            r.fact(
                "alexnet_conv_mac_share",
                conv_macs as f64 / m as f64,
                Format::Percent(1),
            );
            r.tables.push(layer_table(
                "alexnet_layers",
                "AlexNet at 224 x 224 (two-GPU layout), layer by layer: output shape, \
                 parameters and multiply-adds for one image."
                    .into(),
                &counts,
            ));
        }
        if a.name == "LeNet-5" {
            r.tables.push(layer_table(
                "lenet5_layers",
                "LeNet-5 on a 28 x 28 digit, layer by layer.".into(),
                &counts,
            ));
        }
    }
    r.tables.insert(
        0,
        Table {
            name: "architectures".into(),
            caption: "Parameters and multiply-adds (convolutions and dense layers) for \
                      one image, counted from each architecture's description; \
                      'built' is `n_params` of the network the book constructs. \
                      Layers with weights count a basic block as two (its projection \
                      shortcut is not on the longest path)."
                .into(),
            columns: vec![
                col("architecture", Format::Int),
                col("input", Format::Int),
                col("layers with weights", Format::Int),
                col("parameters", Format::Int),
                col("parameters (built)", Format::Int),
                col("multiply-adds", Format::Int),
            ],
            rows,
        },
    );
    Ok(())
}
