//! A scalar reverse-mode automatic differentiation engine (a computational graph).
//!
//! Every arithmetic operation on a [`Value`] creates a new node that remembers its inputs
//! and the *local* derivative of its output with respect to each input, evaluated at the
//! forward values:
//!
//! | operation | $\partial\,\text{out} / \partial\,\text{input}$ |
//! |---|---|
//! | $a + b$ | $1$, $1$ |
//! | $a \cdot b$ | $b$, $a$ |
//! | $a^p$ | $p\,a^{p-1}$ |
//! | $e^a$ | $e^a$ |
//! | $\log a$ | $1/a$ |
//! | $\tanh a$ | $1 - \tanh^2 a$ |
//! | $\sigma(a)$ | $\sigma(a)(1 - \sigma(a))$ |
//! | $\mathrm{relu}(a)$ | $[a > 0]$ |
//!
//! [`Value::backward`] sets $\bar{L} = \partial L/\partial L = 1$ and visits the nodes in
//! reverse topological order (every node after all the nodes that use it), adding
//! $\bar{v} \cdot \partial v/\partial u$ to the gradient $\bar{u}$ of each input $u$.
//! This is the multivariate chain rule, $\bar u = \sum_{v \text{ uses } u} \bar v\,
//! \partial v/\partial u$: gradients are **summed** over every use, which is why a node
//! used twice (as in $a \cdot a$) gets both contributions, and why the order matters (a
//! node's gradient is complete only once every node that uses it has been visited).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::rc::Rc;

use crate::report::graph::GraphPlot;

struct Node {
    data: f64,
    grad: Cell<f64>,
    op: &'static str,
    label: RefCell<String>,
    /// Inputs with the local derivative of this node with respect to each.
    parents: Vec<(Value, f64)>,
}

impl Drop for Node {
    // Dropping a long chain recursively would overflow the stack: unlink it iteratively.
    fn drop(&mut self) {
        let mut stack: Vec<Value> = self.parents.drain(..).map(|(v, _)| v).collect();
        while let Some(v) = stack.pop() {
            if let Ok(mut node) = Rc::try_unwrap(v.0) {
                stack.extend(node.parents.drain(..).map(|(v, _)| v));
            }
        }
    }
}

/// A scalar in a computational graph: its value, its gradient after
/// [`Value::backward`], and the operation and inputs that produced it.
///
/// Cloning a `Value` clones a handle to the same node.
#[derive(Clone)]
pub struct Value(Rc<Node>);

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value(data={}, grad={})", self.data(), self.grad())
    }
}

impl Value {
    /// A leaf (an input or a parameter).
    pub fn new(data: f64) -> Self {
        Self::from_op(data, "", vec![])
    }

    /// A leaf with a name shown in graph figures.
    pub fn named(data: f64, label: &str) -> Self {
        let v = Self::new(data);
        v.set_label(label);
        v
    }

    fn from_op(data: f64, op: &'static str, parents: Vec<(Value, f64)>) -> Self {
        Value(Rc::new(Node {
            data,
            grad: Cell::new(0.0),
            op,
            label: RefCell::new(String::new()),
            parents,
        }))
    }

    /// The forward value.
    pub fn data(&self) -> f64 {
        self.0.data
    }

    /// $\partial L / \partial \text{self}$ after [`Value::backward`] on `L`.
    pub fn grad(&self) -> f64 {
        self.0.grad.get()
    }

    /// The operation that produced this node (empty for a leaf).
    pub fn op(&self) -> &'static str {
        self.0.op
    }

    /// Names the node (for graph figures).
    pub fn set_label(&self, label: &str) {
        *self.0.label.borrow_mut() = label.to_string();
    }

    /// `self^p` for a constant exponent `p`.
    pub fn pow(&self, p: f64) -> Value {
        let a = self.data();
        Self::from_op(a.powf(p), "pow", vec![(self.clone(), p * a.powf(p - 1.0))])
    }

    /// $e^{\text{self}}$.
    pub fn exp(&self) -> Value {
        let e = self.data().exp();
        Self::from_op(e, "exp", vec![(self.clone(), e)])
    }

    /// $\log(\text{self})$ (natural log).
    pub fn log(&self) -> Value {
        let a = self.data();
        Self::from_op(a.ln(), "log", vec![(self.clone(), 1.0 / a)])
    }

    /// $\tanh(\text{self})$.
    pub fn tanh(&self) -> Value {
        let t = self.data().tanh();
        Self::from_op(t, "tanh", vec![(self.clone(), 1.0 - t * t)])
    }

    /// The logistic sigmoid.
    pub fn sigmoid(&self) -> Value {
        let s = 1.0 / (1.0 + (-self.data()).exp());
        Self::from_op(s, "sigmoid", vec![(self.clone(), s * (1.0 - s))])
    }

    /// $\max(0, \text{self})$, with derivative 0 at 0.
    pub fn relu(&self) -> Value {
        let a = self.data();
        let d = if a > 0.0 { 1.0 } else { 0.0 };
        Self::from_op(a.max(0.0), "relu", vec![(self.clone(), d)])
    }

    fn key(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }

    // ANCHOR: topo
    /// Every node this one depends on, itself last, each after all of its inputs.
    pub fn topological_order(&self) -> Vec<Value> {
        let mut order = vec![];
        let mut seen = HashSet::new();
        // Iterative depth-first search (deep graphs would overflow a recursive one).
        let mut stack = vec![(self.clone(), false)];
        while let Some((v, expanded)) = stack.pop() {
            if expanded {
                order.push(v);
                continue;
            }
            if !seen.insert(v.key()) {
                continue;
            }
            stack.push((v.clone(), true));
            for (p, _) in v.0.parents.iter().rev() {
                if !seen.contains(&p.key()) {
                    stack.push((p.clone(), false));
                }
            }
        }
        order
    }
    // ANCHOR_END: topo

    // ANCHOR: backward
    /// Computes $\partial\,\text{self}/\partial v$ into `v.grad()` for every node `v` of
    /// the graph (gradients are reset first, so calling it twice gives the same result).
    pub fn backward(&self) {
        let order = self.topological_order();
        for v in &order {
            v.0.grad.set(0.0);
        }
        self.0.grad.set(1.0);
        for v in order.iter().rev() {
            let g = v.grad();
            for (p, local) in &v.0.parents {
                p.0.grad.set(p.grad() + g * local);
            }
        }
    }
    // ANCHOR_END: backward

    /// The graph of this expression as a figure: value nodes (`label | data | grad`) and
    /// operation nodes, with edges from inputs to outputs.
    pub fn to_graph(&self) -> GraphPlot {
        let order = self.topological_order();
        let mut g = GraphPlot {
            nodes: vec![],
            edges: vec![],
            is_op: vec![],
        };
        let mut index = std::collections::HashMap::new();
        for v in &order {
            let label = v.0.label.borrow();
            let name = if label.is_empty() {
                String::new()
            } else {
                format!("{label} | ")
            };
            g.nodes
                .push(format!("{name}data {:.4} | grad {:.4}", v.data(), v.grad()));
            g.is_op.push(false);
            let vi = g.nodes.len() - 1;
            index.insert(v.key(), vi);
            if !v.0.op.is_empty() {
                g.nodes.push(v.0.op.to_string());
                g.is_op.push(true);
                let oi = g.nodes.len() - 1;
                g.edges.push((oi, vi));
                for (p, _) in &v.0.parents {
                    g.edges.push((index[&p.key()], oi));
                }
            }
        }
        g
    }
}

macro_rules! binary {
    ($trait:ident, $method:ident, $body:expr) => {
        impl $trait<&Value> for &Value {
            type Output = Value;
            fn $method(self, rhs: &Value) -> Value {
                let f: fn(&Value, &Value) -> Value = $body;
                f(self, rhs)
            }
        }
        impl $trait<Value> for Value {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                (&self).$method(&rhs)
            }
        }
        impl $trait<&Value> for Value {
            type Output = Value;
            fn $method(self, rhs: &Value) -> Value {
                (&self).$method(rhs)
            }
        }
        impl $trait<Value> for &Value {
            type Output = Value;
            fn $method(self, rhs: Value) -> Value {
                self.$method(&rhs)
            }
        }
        impl $trait<f64> for &Value {
            type Output = Value;
            fn $method(self, rhs: f64) -> Value {
                self.$method(&Value::new(rhs))
            }
        }
        impl $trait<f64> for Value {
            type Output = Value;
            fn $method(self, rhs: f64) -> Value {
                (&self).$method(&Value::new(rhs))
            }
        }
    };
}

// ANCHOR: ops
binary!(Add, add, |a, b| Value::from_op(
    a.data() + b.data(),
    "+",
    vec![(a.clone(), 1.0), (b.clone(), 1.0)]
));
binary!(Mul, mul, |a, b| Value::from_op(
    a.data() * b.data(),
    "×",
    vec![(a.clone(), b.data()), (b.clone(), a.data())]
));
// ANCHOR_END: ops
binary!(Sub, sub, |a, b| a + &(-b));
binary!(Div, div, |a, b| a * &b.pow(-1.0));

impl Neg for &Value {
    type Output = Value;
    fn neg(self) -> Value {
        self * -1.0
    }
}

impl Neg for Value {
    type Output = Value;
    fn neg(self) -> Value {
        &self * -1.0
    }
}

/// Central finite differences of `f` at `x`, one partial derivative per coordinate.
pub fn numeric_gradient(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut v = x.to_vec();
    (0..x.len())
        .map(|i| {
            v[i] = x[i] + h;
            let up = f(&v);
            v[i] = x[i] - h;
            let down = f(&v);
            v[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}
