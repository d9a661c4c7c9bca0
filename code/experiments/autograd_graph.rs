//! Experiment `autograd_graph`: the computational graph of
//! $L = \tanh(a b + c)\cdot a$, a small expression that uses $a$ twice, with the
//! gradients found by reverse mode, by central finite differences and by hand.
//!
//! By hand, with $t = \tanh(ab + c)$: $\partial L/\partial a = (1 - t^2)\,b\,a + t$ (the
//! two uses of $a$ add), $\partial L/\partial b = (1-t^2)\,a^2$,
//! $\partial L/\partial c = (1-t^2)\,a$.

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::autograd::{numeric_gradient, Value as V};
use crate::data::DataDir;
use crate::report::{Column, Figure, Format, Plot, Report, Table, Value};

/// Experiment `autograd_graph`, registered in [`super::all`].
pub struct AutogradGraph;

impl Experiment for AutogradGraph {
    const NAME: &'static str = "autograd_graph";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "Reverse-mode autograd on L = tanh(a·b + c)·a";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// The point the expression is evaluated at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// $a$, $b$, $c$.
    pub point: [f64; 3],
    /// Finite-difference step.
    pub h: f64,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            point: [2.0, -0.75, 1.0],
            h: 1e-5,
        }
    }

    /// Same as [`Config::full`] (it is instantaneous).
    fn quick() -> Self {
        Self::full()
    }
}

// ANCHOR: expression
/// $L = \tanh(ab + c)\cdot a$ on autograd values, with its leaves.
pub fn expression(a: f64, b: f64, c: f64) -> (V, [V; 3]) {
    let (a, b, c) = (V::named(a, "a"), V::named(b, "b"), V::named(c, "c"));
    let e = &a * &b;
    e.set_label("e = a·b");
    let d = &e + &c;
    d.set_label("d = e + c");
    let t = d.tanh();
    t.set_label("t = tanh d");
    let l = &t * &a; // `a` is used a second time
    l.set_label("L = t·a");
    (l, [a, b, c])
}
// ANCHOR_END: expression

/// The gradient by hand, $(\partial L/\partial a, \partial L/\partial b,
/// \partial L/\partial c)$.
pub fn by_hand(a: f64, b: f64, c: f64) -> [f64; 3] {
    let t = (a * b + c).tanh();
    let s = 1.0 - t * t;
    [s * b * a + t, s * a * a, s * a]
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
    let [a, b, c] = cfg.point;
    let (l, leaves) = expression(a, b, c);
    l.backward();
    let fd = numeric_gradient(
        |p| {
            let (l, _) = expression(p[0], p[1], p[2]);
            l.data()
        },
        &cfg.point,
        cfg.h,
    );
    let hand = by_hand(a, b, c);
    let col = |h: &str, f| Column {
        header: h.into(),
        format: f,
    };
    let names = ["a", "b", "c"];
    let mut worst = 0.0f64;
    let rows = (0..3)
        .map(|i| {
            worst = worst.max((leaves[i].grad() - fd[i]).abs());
            vec![
                Value::Text(names[i].into()),
                Value::Num(cfg.point[i]),
                Value::Num(leaves[i].grad()),
                Value::Num(fd[i]),
                Value::Num(hand[i]),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "grads".into(),
        caption: format!(
            "Gradients of L at (a, b, c) = ({a}, {b}, {c}): reverse mode, central finite \
             differences (h = {}) and the formulas derived by hand.",
            cfg.h
        ),
        columns: vec![
            col("leaf", Format::Int),
            col("value", Format::Fixed(2)),
            col("reverse mode", Format::Fixed(6)),
            col("finite diff.", Format::Fixed(6)),
            col("by hand", Format::Fixed(6)),
        ],
        rows,
    });
    r.fact("autograd_vs_fd", worst, Format::Sci(1));
    r.figures.push(Figure {
        name: "graph".into(),
        title: "Computational graph of L = tanh(a·b + c)·a after backward".into(),
        plot: Plot::Graph(l.to_graph()),
    });
    Ok(())
}
