//! Experiment `diagnostic_test` (being written).

use anyhow::{bail, Result};

use super::{Experiment, Tier};
use crate::data::DataDir;
use crate::report::Report;

/// The experiment's entry in [`super::all`].
pub const EXPERIMENT: Experiment = Experiment {
    name: "diagnostic_test",
    chapter: "ch01",
    config: |_| serde_json::Value::Null,
    run,
};

fn run(_tier: Tier, _dir: &DataDir) -> Result<Report> {
    bail!("diagnostic_test is being written")
}
