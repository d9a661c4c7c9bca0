//! Experiment `attention_scale`: why attention divides its scores by $\sqrt{d_k}$.
//!
//! For each head width $d_k$, draws queries and keys with independent standard-normal
//! entries ([`scale_stats`]) and measures the variance of $q \cdot k$ (which the
//! derivation says is $d_k$), of $q \cdot k / \sqrt{d_k}$ (which it says is 1), and the
//! mean largest softmax weight over `t_k` keys with and without the scaling: how close
//! the unscaled softmax comes to a one-hot vector as $d_k$ grows.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::attn::scale_stats;
use crate::data::DataDir;
use crate::report::{col, Format, Report, Table, Value};

/// Experiment `attention_scale`, registered in [`super::all`].
pub struct AttentionScale;

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The head widths measured.
    pub d_ks: Vec<usize>,
    /// Keys per query (the length of each softmax).
    pub t_k: usize,
    /// Queries drawn per width.
    pub draws: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            d_ks: vec![4, 16, 64, 256, 1024],
            t_k: 16,
            draws: 20_000,
            seed: 0,
        }
    }

    fn quick() -> Self {
        Config {
            draws: 1_000,
            ..Self::full()
        }
    }
}

impl Experiment for AttentionScale {
    const NAME: &'static str = "attention_scale";
    const CHAPTER: &'static str = "ch10";
    const TITLE: &'static str = "Score variance and softmax saturation with and without 1/sqrt(d_k)";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let bar = crate::progress::bar(cfg.d_ks.len() as u64, "d_k");
        let mut rows = vec![];
        for &d_k in &cfg.d_ks {
            let st = scale_stats(d_k, cfg.t_k, cfg.draws, &mut rng);
            rows.push(vec![
                Value::Num(d_k as f64),
                Value::Num(st.var_raw),
                Value::Num(st.var_raw / d_k as f64),
                Value::Num(st.var_scaled),
                Value::Num(st.max_weight_raw),
                Value::Num(st.max_weight_scaled),
            ]);
            r.fact(&format!("max_weight_raw_{d_k}"), st.max_weight_raw, Format::Fixed(3));
            r.fact(&format!("max_weight_scaled_{d_k}"), st.max_weight_scaled, Format::Fixed(3));
            r.fact(&format!("var_scaled_{d_k}"), st.var_scaled, Format::Fixed(2));
            r.fact(&format!("var_raw_{d_k}"), st.var_raw, Format::Fixed(1));
            bar.inc(1);
        }
        bar.finish_and_clear();
        r.fact("t_k", cfg.t_k as f64, Format::Int);
        r.fact("draws", cfg.draws as f64, Format::Int);
        r.tables.push(Table {
            name: "attention_scale".into(),
            caption: format!(
                "Dot products of random queries and keys with standard-normal entries, \
                 {} queries with {} keys each per width: the variance of the raw and \
                 scaled scores, and the mean largest weight of a softmax over the {} \
                 keys of a query.",
                cfg.draws, cfg.t_k, cfg.t_k
            ),
            columns: vec![
                col("d_k", Format::Int),
                col("var(q·k)", Format::Fixed(1)),
                col("var(q·k) / d_k", Format::Fixed(3)),
                col("var(q·k / √d_k)", Format::Fixed(3)),
                col("max weight, unscaled", Format::Fixed(3)),
                col("max weight, scaled", Format::Fixed(3)),
            ],
            rows,
        });
        Ok(())
    }
}
