//! Optimizers from scratch: SGD, momentum, Nesterov momentum, Adam and AdamW.
//!
//! Every optimizer walks the model's parameters with [`Module::visit_params`] and keeps
//! its state (velocities, moments) in a map keyed by the parameter's dotted name, so one
//! optimizer serves any model, and the state of `encoder.layers.0.w` can be inspected,
//! saved or reset by name.
//!
//! # Gradient descent
//!
//! For a loss $L(\theta)$ with gradient $g_t = \nabla L(\theta_t)$,
//! $$\theta_{t+1} = \theta_t - \eta\, g_t.$$
//! On a quadratic $L = \frac12 \theta^\top H \theta$ with eigenvalues
//! $\lambda_{\min} \le \dots \le \lambda_{\max}$ of $H$, the error along eigenvector $i$
//! is multiplied by $1 - \eta\lambda_i$ per step: the step must satisfy
//! $\eta < 2/\lambda_{\max}$, and the slowest direction then shrinks like
//! $1 - 2/\kappa$ per step at best, with $\kappa = \lambda_{\max}/\lambda_{\min}$ the
//! condition number.
//!
//! # Momentum (heavy ball) and Nesterov
//!
//! A velocity accumulates past gradients (the PyTorch convention, which folds the
//! learning rate out of the velocity):
//! $$v_{t+1} = \mu v_t + g_t, \qquad \theta_{t+1} = \theta_t - \eta\, v_{t+1}.$$
//! Along a direction of constant gradient the velocity tends to $g/(1-\mu)$: momentum
//! $\mu = 0.9$ is a ten times larger step where gradients agree, while oscillating
//! components cancel. On the quadratic the best choice
//! $\mu = \big(\frac{\sqrt\kappa - 1}{\sqrt\kappa + 1}\big)^2$ gives a rate of
//! $1 - 2/\sqrt\kappa$ instead of $1 - 2/\kappa$.
//!
//! Nesterov's variant evaluates the step "after the look-ahead"; in the same convention
//! it is $\theta_{t+1} = \theta_t - \eta\,(g_t + \mu v_{t+1})$.
//!
//! Weight decay in SGD is the L2 penalty $\frac\lambda2\lVert\theta\rVert^2$ folded
//! into the gradient: $g_t \leftarrow g_t + \lambda\theta_t$.
//!
//! # Adam
//!
//! Adam keeps exponential averages of the gradient and of its square,
//! $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
//!   v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$
//! both started at zero. Unrolling, $m_t = (1-\beta_1)\sum_{s\le t}\beta_1^{t-s} g_s$,
//! so for a constant gradient $\mathbb E\[m_t\] = (1-\beta_1^t)\,g$: the average is biased
//! towards zero early on, and dividing by $1-\beta_1^t$ removes the bias
//! (likewise for $v_t$):
//! $$\hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t}, \quad
//!   \theta_t = \theta_{t-1} - \eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.$$
//! The step is about $\eta$ per coordinate whatever the gradient's scale: Adam is
//! invariant to a rescaling of each coordinate of the gradient.
//!
//! # AdamW: decoupled weight decay
//!
//! With Adam, an L2 term $\lambda\theta$ added to the gradient is divided by
//! $\sqrt{\hat v}$ like the rest, so weights with large gradients are barely decayed.
//! AdamW (Loshchilov and Hutter) decays the weights directly, outside the adaptive step:
//! $$\theta_t = (1 - \eta\lambda)\,\theta_{t-1} -
//!   \eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.$$
//! This is the form of `candle_nn::AdamW`, and the test checks we agree with it.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Zip};
use rayon::prelude::*;

use crate::nn::{Module, Param};

/// Something that updates a model's parameters from their accumulated gradients.
///
/// Its memory between steps (velocities, moments, the step count) can be taken out and
/// put back through [`SaveState`], which is what a training checkpoint stores.
pub trait Optimizer: SaveState {
    /// One update of every parameter of `model` from its `grad`. Gradients are left as
    /// they are: call [`Module::zero_grad`] before the next backward pass.
    fn step(&mut self, model: &mut dyn Module);

    /// The learning rate.
    fn lr(&self) -> f32;
}

/// The state tensor of `name`, created as zeros shaped like `p` on first use.
fn state<'a>(
    map: &'a mut BTreeMap<String, ArrayD<f32>>,
    name: &str,
    p: &Param,
) -> &'a mut ArrayD<f32> {
    map.entry(name.to_string())
        .or_insert_with(|| ArrayD::zeros(p.value.raw_dim()))
}

// ANCHOR: sgd
/// Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate $\eta$.
    pub lr: f32,
    /// Momentum $\mu$ (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov's look-ahead variant of momentum.
    pub nesterov: bool,
    /// L2 weight decay $\lambda$ added to the gradient.
    pub weight_decay: f32,
    /// Velocity per parameter, by dotted name.
    pub velocity: BTreeMap<String, ArrayD<f32>>,
}

impl Sgd {
    /// Plain SGD.
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            velocity: BTreeMap::new(),
        }
    }

    /// SGD with heavy-ball momentum.
    pub fn momentum(lr: f32, momentum: f32) -> Self {
        Sgd {
            momentum,
            ..Self::new(lr)
        }
    }

    /// SGD with Nesterov momentum.
    pub fn nesterov(lr: f32, momentum: f32) -> Self {
        Sgd {
            nesterov: true,
            ..Self::momentum(lr, momentum)
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Module) {
        let (lr, mu, wd, nesterov) =
            (self.lr, self.momentum, self.weight_decay, self.nesterov);
        let velocity = &mut self.velocity;
        model.visit_params("", &mut |name, p| {
            if mu == 0.0 {
                // theta -= lr * (g + wd * theta)
                Zip::from(&mut p.value).and(&p.grad).for_each(|w, &g| {
                    *w -= lr * (g + wd * *w);
                });
                return;
            }
            let v = state(velocity, name, p);
            Zip::from(&mut p.value)
                .and(&p.grad)
                .and(v)
                .for_each(|w, &g, v| {
                    let g = g + wd * *w;
                    *v = mu * *v + g;
                    let update = if nesterov { g + mu * *v } else { *v };
                    *w -= lr * update;
                });
        });
    }

    fn lr(&self) -> f32 {
        self.lr
    }
}
// ANCHOR_END: sgd

// ANCHOR: adam
/// Adam with bias correction; with `decoupled` weight decay it is AdamW.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate $\eta$.
    pub lr: f32,
    /// Decay of the first-moment average $\beta_1$.
    pub beta1: f32,
    /// Decay of the second-moment average $\beta_2$.
    pub beta2: f32,
    /// $\epsilon$ added to $\sqrt{\hat v}$.
    pub eps: f32,
    /// Weight decay $\lambda$.
    pub weight_decay: f32,
    /// `true`: AdamW's $(1 - \eta\lambda)\theta$; `false`: L2, $g + \lambda\theta$.
    pub decoupled: bool,
    /// Steps taken, $t$.
    pub t: i32,
    /// First moments $m$, by dotted name.
    pub m: BTreeMap<String, ArrayD<f32>>,
    /// Second moments $v$, by dotted name.
    pub v: BTreeMap<String, ArrayD<f32>>,
}

impl Adam {
    /// Adam with the usual $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// AdamW: Adam with decoupled weight decay $\lambda$.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Adam {
            weight_decay,
            decoupled: true,
            ..Self::new(lr)
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Module) {
        self.t += 1;
        let (lr, b1, b2, eps, wd) =
            (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay);
        let decoupled = self.decoupled;
        // Bias corrections, as multipliers: 1 / (1 - beta^t).
        let scale_m = 1.0 / (1.0 - b1.powi(self.t));
        let scale_v = 1.0 / (1.0 - b2.powi(self.t));
        let (ms, vs) = (&mut self.m, &mut self.v);
        model.visit_params("", &mut |name, p| {
            let m = state(ms, name, p);
            let v = state(vs, name, p);
            let update = |w: &mut f32, &g: &f32, m: &mut f32, v: &mut f32| {
                let g = if decoupled { g } else { g + wd * *w };
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let (m_hat, v_hat) = (*m * scale_m, *v * scale_v);
                if decoupled {
                    *w *= 1.0 - lr * wd;
                }
                *w -= lr * (m_hat / (v_hat.sqrt() + eps));
            };
            // Each coordinate is independent: large tensors are updated in parallel.
            each_coordinate(&mut p.value, &p.grad, m, v, update);
        });
    }

    fn lr(&self) -> f32 {
        self.lr
    }
}
// ANCHOR_END: adam

/// `f(w, g, m, v)` on every coordinate of four tensors of one shape: in parallel over
/// flat chunks when the tensors are large and contiguous (the usual case), else in
/// order.
fn each_coordinate(
    w: &mut ArrayD<f32>,
    g: &ArrayD<f32>,
    m: &mut ArrayD<f32>,
    v: &mut ArrayD<f32>,
    f: impl Fn(&mut f32, &f32, &mut f32, &mut f32) + Sync,
) {
    const CHUNK: usize = 1 << 13;
    let big = g.len() >= 1 << 15;
    match (
        w.as_slice_mut(),
        g.as_slice(),
        m.as_slice_mut(),
        v.as_slice_mut(),
    ) {
        (Some(w), Some(g), Some(m), Some(v)) if big => {
            w.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((w, g), (m, v))| {
                    for (((w, g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                        f(w, g, m, v);
                    }
                });
        }
        _ => Zip::from(w).and(g).and(m).and(v).for_each(f),
    }
}

/// The optimizers compared in the book, by name, as a serialisable choice.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// SGD with Nesterov momentum 0.9.
    Nesterov,
    /// Adam, $\beta_1 = 0.9$, $\beta_2 = 0.999$.
    Adam,
}

impl OptimizerKind {
    /// All four, in the book's order.
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::Adam,
    ];

    /// A display name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::Nesterov => "Nesterov",
            OptimizerKind::Adam => "Adam",
        }
    }

    /// A fresh optimizer of this kind with learning rate `lr`.
    pub fn build(self, lr: f32) -> Box<dyn Optimizer> {
        match self {
            OptimizerKind::Sgd => Box::new(Sgd::new(lr)),
            OptimizerKind::Momentum => Box::new(Sgd::momentum(lr, 0.9)),
            OptimizerKind::Nesterov => Box::new(Sgd::nesterov(lr, 0.9)),
            OptimizerKind::Adam => Box::new(Adam::new(lr)),
        }
    }
}

pub mod surfaces;
/// What an optimizer remembers between steps: tensors by key (`velocity.fc1.weight`,
/// `m.fc1.weight`) and scalars by name (Adam's step count `t`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// State tensors, by key.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// State scalars, by name.
    pub scalars: BTreeMap<String, f64>,
}

/// Taking an optimizer's state out and putting it back, for checkpoints. A parameter the
/// optimizer never stepped (a frozen one) has no entry.
pub trait SaveState {
    /// A copy of the state.
    fn save_state(&self) -> OptimizerState;

    /// Replaces the state by `state`; an error (and no change) if a key is not one this
    /// optimizer keeps.
    fn load_state(&mut self, state: OptimizerState) -> Result<(), String>;
}

/// The tensors of `state` under `key.`, by parameter name; an error for any other key.
fn split_state(
    state: &OptimizerState,
    keys: &[&str],
) -> Result<Vec<BTreeMap<String, ArrayD<f32>>>, String> {
    let mut out = vec![BTreeMap::new(); keys.len()];
    for (k, t) in &state.tensors {
        let slot = keys.iter().position(|key| {
            k.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
        });
        let Some(i) = slot else {
            return Err(format!(
                "optimizer state tensor {k:?} is not one of {keys:?} followed by a name"
            ));
        };
        out[i].insert(k[keys[i].len() + 1..].to_string(), t.clone());
    }
    Ok(out)
}

fn with_prefix<'a>(
    key: &'a str,
    map: &'a BTreeMap<String, ArrayD<f32>>,
) -> impl Iterator<Item = (String, ArrayD<f32>)> + 'a {
    map.iter()
        .map(move |(n, t)| (format!("{key}.{n}"), t.clone()))
}

impl SaveState for Sgd {
    fn save_state(&self) -> OptimizerState {
        OptimizerState {
            tensors: with_prefix("velocity", &self.velocity).collect(),
            scalars: BTreeMap::new(),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<(), String> {
        if let Some(k) = state.scalars.keys().next() {
            return Err(format!("SGD keeps no scalar state, got {k:?}"));
        }
        let mut parts = split_state(&state, &["velocity"])?;
        self.velocity = parts.remove(0);
        Ok(())
    }
}

impl SaveState for Adam {
    fn save_state(&self) -> OptimizerState {
        OptimizerState {
            tensors: with_prefix("m", &self.m)
                .chain(with_prefix("v", &self.v))
                .collect(),
            scalars: BTreeMap::from([("t".to_string(), f64::from(self.t))]),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<(), String> {
        let t = match state.scalars.get("t") {
            Some(&t) if t >= 0.0 && t.fract() == 0.0 && t <= f64::from(i32::MAX) => {
                t as i32
            }
            Some(t) => return Err(format!("Adam step count t = {t} is not a count")),
            None => return Err("Adam state has no step count t".into()),
        };
        if let Some(k) = state.scalars.keys().find(|k| *k != "t") {
            return Err(format!("Adam keeps no scalar {k:?}"));
        }
        let mut parts = split_state(&state, &["m", "v"])?;
        self.v = parts.pop().expect("two parts");
        self.m = parts.pop().expect("two parts");
        self.t = t;
        Ok(())
    }
}
