//! Chapter 2, computational graphs: the scalar reverse-mode autograd, checked against
//! finite differences and hand derivations, and its graph figure.

use dlbook::autograd::{numeric_gradient, Value};
use dlbook::data::DataDir;
use dlbook::experiments::autograd_graph;
use dlbook::experiments::{self, Preset as _};
use dlbook::report::{render_figure, Plot};

// ANCHOR: usage_reuse
/// $\partial(a \cdot a)/\partial a$ and $\partial(a + a)/\partial a$ at $a = 3$.
fn reused_node_grads() -> (f64, f64) {
    let a = Value::new(3.0);
    (&a * &a).backward();
    let square = a.grad();
    (&a + &a).backward();
    (square, a.grad())
}
// ANCHOR_END: usage_reuse

#[test]
fn reused_node_gradients_add_up() {
    let (square, double) = reused_node_grads();
    assert_eq!(square, 6.0);
    assert_eq!(double, 2.0);
}

#[test]
fn reused_node_expression_matches_hand_derivation() {
    let [a, b, c] = autograd_graph::Config::full().point;
    let (l, leaves) = autograd_graph::expression(a, b, c);
    l.backward();
    let hand = autograd_graph::by_hand(a, b, c);
    for (v, h) in leaves.iter().zip(hand) {
        assert!((v.grad() - h).abs() < 1e-12, "{} vs {h}", v.grad());
    }
}

/// A function exercising every operation, as autograd values and as plain `f64`.
fn every_op(p: &[f64]) -> (Value, Vec<Value>, f64) {
    let v: Vec<Value> = p.iter().map(|&x| Value::new(x)).collect();
    let (x, y, z) = (&v[0], &v[1], &v[2]);
    let out = (x * y).tanh() + (z.pow(3.0) / x).exp().log() - y.sigmoid() * z.relu()
        + (x - z).relu() * 0.5
        + (-y).exp();
    let (a, b, c) = (p[0], p[1], p[2]);
    let plain = (a * b).tanh() + (c.powi(3) / a).exp().ln()
        - 1.0 / (1.0 + (-b).exp()) * c.max(0.0)
        + (a - c).max(0.0) * 0.5
        + (-b).exp();
    (out, v, plain)
}

// ANCHOR: usage_fd
/// The largest |reverse mode - finite differences| over a few points of [`every_op`].
fn autograd_vs_finite_differences() -> f64 {
    let points = [[0.7, -1.3, 0.4], [1.5, 0.2, -0.9], [-0.8, 2.0, 1.1]];
    let mut worst = 0.0f64;
    for p in points {
        let (out, leaves, _) = every_op(&p);
        out.backward();
        let fd = numeric_gradient(|q| every_op(q).2, &p, 1e-6);
        for (v, g) in leaves.iter().zip(fd) {
            worst = worst.max((v.grad() - g).abs());
        }
    }
    worst
}
// ANCHOR_END: usage_fd

#[test]
fn autograd_matches_finite_differences() {
    assert!(autograd_vs_finite_differences() < 1e-7);
}

#[test]
fn forward_values_match_plain_arithmetic() {
    let p = [0.7, -1.3, 0.4];
    let (out, _, plain) = every_op(&p);
    assert!((out.data() - plain).abs() < 1e-12);
}

#[test]
fn backward_twice_gives_the_same_gradients() {
    let (l, leaves) = autograd_graph::expression(2.0, -0.75, 1.0);
    l.backward();
    let first: Vec<f64> = leaves.iter().map(Value::grad).collect();
    l.backward();
    let second: Vec<f64> = leaves.iter().map(Value::grad).collect();
    assert_eq!(first, second);
}

#[test]
fn topological_order_puts_inputs_first() {
    let (l, _) = autograd_graph::expression(2.0, -0.75, 1.0);
    let order = l.topological_order();
    // a, b, e, c, d, t, L: 7 distinct nodes, a counted once though used twice.
    assert_eq!(order.len(), 7);
    assert_eq!(order.last().map(Value::data), Some(l.data()));
}

#[test]
fn a_deep_chain_does_not_overflow_the_stack() {
    let x = Value::new(1.0);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = &y * 1.0;
    }
    y.backward();
    assert_eq!(x.grad(), 1.0);
}

#[test]
fn graph_figure_draws_every_node() {
    let r = experiments::quick("autograd_graph", &DataDir::resolve(None))
        .cloned()
        .expect("runs");
    let fig = &r.figures[0];
    let Plot::Graph(g) = &fig.plot else {
        panic!("not a graph figure")
    };
    // 7 values and 4 operations (×, +, tanh, ×).
    assert_eq!(g.nodes.len(), 11);
    assert_eq!(g.is_op.iter().filter(|&&o| o).count(), 4);
    let svg = render_figure(fig).expect("renders");
    assert_eq!(svg.matches("<circle").count(), 4);
    assert_eq!(svg.matches("<rect").count(), 1 + 7);
    assert!(r.get_fact("autograd_vs_fd").expect("fact") < 1e-8);
}
