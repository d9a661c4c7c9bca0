//! Experiment `pca_mnist` (being written).

use anyhow::{bail, Result};

use super::{Experiment, Tier};
use crate::data::DataDir;
use crate::report::Report;

/// The experiment's entry in [`super::all`].
pub const EXPERIMENT: Experiment = Experiment {
    name: "pca_mnist",
    chapter: "ch01",
    config: |_| serde_json::Value::Null,
    run,
};

fn run(_tier: Tier, _dir: &DataDir) -> Result<Report> {
    bail!("pca_mnist is being written")
}
