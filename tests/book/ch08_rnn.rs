//! Chapter 8.1-8.3, recurrent layers: the RNN, LSTM and GRU from scratch, every
//! gradient checked three ways (manual BPTT, finite differences, candle autograd in
//! `F64`) for one step and for the unrolled sequence, over three seeds, including the
//! gradient with respect to the initial state; the LSTM and GRU against candle-nn's own;
//! truncated BPTT with a carried state; `reset_state` through `Named`; `Linear` on
//! sequences; the embedding; the forget-gate bias.
//!
//! Tolerances, as in chapters 4 and 6: manual (`f32`) vs candle (`F64`) within `1e-5`;
//! anything involving `f32` finite differences (step `h = 1e-2`) within `1e-3`; the
//! from-scratch layers against candle-nn's `LSTM` and `GRU` (run in `F64`) within `1e-5`;
//! two from-scratch computations that perform the same `f32` operations in the same
//! order, exactly.

use candle_core::{DType, Device, Module as _, Tensor, Var};
use candle_nn::rnn::{GRUConfig, GRUState, LSTMConfig, LSTMState, RNN as _};
use candle_nn::VarBuilder;
use dlbook::nn::candle_twin::{to_array, to_tensor};
use dlbook::nn::gradcheck::{
    finite_diff, manual_grads, max_rel_error, normal, numeric_grads, rel_error, Grads,
};
use dlbook::nn::{Embedding, Init, Layer, Linear, Mode, Module, Named};
use dlbook::rnn::candle_twin::{self, candle_nn_varmap, CandleWeights, Cell};
use dlbook::rnn::{Gru, Lstm, Rnn, Weights};
use dlbook::train::{clip_grad_norm, grad_norm, ParamGroups};
use ndarray::{s, Array2, ArrayD, Axis, Ix2, Slice};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Finite-difference step for the `f32` layers.
const H: f32 = 1e-2;

/// Seeds of every three-way check.
const SEEDS: [u64; 3] = [0, 1, 2];

/// The sizes of the checks: batch, input width, hidden width.
const B: usize = 2;
const D_IN: usize = 3;
const HID: usize = 4;

pub(crate) fn f64v(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(f64::from)
}

/// $\langle y, r\rangle$ in `f64`.
pub(crate) fn contract(y: &ArrayD<f32>, r: &ArrayD<f32>) -> f64 {
    y.iter()
        .zip(r)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// The tolerances of every three-way gradient check of chapters 8 to 10.
pub(crate) fn assert_three_ways(who: &str, (a, b, c): (f64, f64, f64)) {
    eprintln!("{who}: manual-fd {a:e}, manual-candle {b:e}, fd-candle {c:e}");
    assert!(b < 1e-5, "{who}: manual vs candle {b:e}");
    assert!(a < 1e-3, "{who}: manual vs finite differences {a:e}");
    assert!(c < 1e-3, "{who}: finite differences vs candle {c:e}");
}

/// The three layers behind one interface, for the checks that are the same for each.
trait Recurrent: Layer + Clone + 'static {
    const CELL: Cell;
    fn build(d_in: usize, hidden: usize, rng: &mut ChaCha8Rng) -> Self;
    fn weights(&self) -> &Weights;
    fn set_carry(&mut self, carry: bool);
    /// Sets `[h0]` or `[h0, c0]`.
    fn set_init(&mut self, init: &[ArrayD<f32>]);
    /// `[dh0]` or `[dh0, dc0]` of the last backward pass.
    fn init_grads(&self) -> Vec<ArrayD<f32>>;
    /// `[h_T]` or `[h_T, c_T]` of the last forward pass.
    fn last(&self) -> Vec<ArrayD<f32>>;
}

/// Steps `range` of a sequence batch `(b, t, d)`.
fn steps(a: &ArrayD<f32>, range: std::ops::Range<usize>) -> ArrayD<f32> {
    a.slice_axis(Axis(1), Slice::from(range)).to_owned()
}

fn m2(a: &ArrayD<f32>) -> Array2<f32> {
    a.clone()
        .into_dimensionality::<Ix2>()
        .expect("a (b, h) state")
}

/// `Recurrent` for a layer with one state, `h`.
macro_rules! one_state {
    ($t:ident, $cell:expr) => {
        impl Recurrent for $t {
            const CELL: Cell = $cell;
            fn build(d_in: usize, hidden: usize, rng: &mut ChaCha8Rng) -> Self {
                $t::new(d_in, hidden, rng)
            }
            fn weights(&self) -> &Weights {
                &self.weights
            }
            fn set_carry(&mut self, carry: bool) {
                self.carry_state = carry;
            }
            fn set_init(&mut self, init: &[ArrayD<f32>]) {
                self.set_initial_state(m2(&init[0]));
            }
            fn init_grads(&self) -> Vec<ArrayD<f32>> {
                vec![self.dh0().expect("backward ran").clone().into_dyn()]
            }
            fn last(&self) -> Vec<ArrayD<f32>> {
                vec![self.final_state().expect("forward ran").clone().into_dyn()]
            }
        }
    };
}

one_state!(Rnn, Cell::Rnn);
one_state!(Gru, Cell::Gru);

impl Recurrent for Lstm {
    const CELL: Cell = Cell::Lstm;
    fn build(d_in: usize, hidden: usize, rng: &mut ChaCha8Rng) -> Self {
        Lstm::new(d_in, hidden, rng)
    }
    fn weights(&self) -> &Weights {
        &self.weights
    }
    fn set_carry(&mut self, carry: bool) {
        self.carry_state = carry;
    }
    fn set_init(&mut self, init: &[ArrayD<f32>]) {
        self.set_initial_state(m2(&init[0]), m2(&init[1]));
    }
    fn init_grads(&self) -> Vec<ArrayD<f32>> {
        let (dh, dc) = (self.dh0(), self.dc0());
        vec![
            dh.expect("backward ran").clone().into_dyn(),
            dc.expect("backward ran").clone().into_dyn(),
        ]
    }
    fn last(&self) -> Vec<ArrayD<f32>> {
        let (h, c) = self.final_state().expect("forward ran");
        vec![h.clone().into_dyn(), c.clone().into_dyn()]
    }
}

/// A seeded layer, an input of `t` steps, a random initial state (set on the layer) and
/// output weights `r`, so the loss $\langle y, r\rangle$ touches every step's output.
fn case<R: Recurrent>(
    t: usize,
    seed: u64,
) -> (R, ArrayD<f32>, Vec<ArrayD<f32>>, ArrayD<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = R::build(D_IN, HID, &mut rng);
    let x = normal(&[B, t, D_IN], &mut rng);
    let init: Vec<ArrayD<f32>> = (0..R::CELL.n_states())
        .map(|_| normal(&[B, HID], &mut rng) * 0.5)
        .collect();
    let r = normal(&[B, t, HID], &mut rng);
    layer.set_init(&init);
    (layer, x, init, r)
}

/// The layer's own BPTT: input, parameters, then the initial state (`h0`, `c0`).
fn manual<R: Recurrent>(layer: &mut R, x: &ArrayD<f32>, r: &ArrayD<f32>) -> Grads {
    let mut g = manual_grads(layer, x, r);
    for (name, d) in ["h0", "c0"].iter().zip(layer.init_grads()) {
        g.params.push((name.to_string(), f64v(&d)));
    }
    g
}

/// Finite differences of the same, the initial state included.
fn numeric<R: Recurrent>(
    layer: &mut R,
    x: &ArrayD<f32>,
    init: &[ArrayD<f32>],
    r: &ArrayD<f32>,
) -> Grads {
    let mut g = numeric_grads(layer, x, r, H);
    for (k, name) in ["h0", "c0"].iter().enumerate().take(init.len()) {
        let d = finite_diff(&init[k], H, |v| {
            let mut s = init.to_vec();
            s[k] = v.clone();
            layer.set_init(&s);
            contract(&layer.forward(x, Mode::Train), r)
        });
        layer.set_init(init);
        g.params.push((name.to_string(), d));
    }
    g
}

// ANCHOR: three_ways
/// The worst `(manual-fd, manual-candle, fd-candle)` disagreement of a layer's
/// gradients (input, four parameters, initial state) over `t`-step sequences and three
/// seeds.
fn three_ways<R: Recurrent>(t: usize) -> (f64, f64, f64) {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for seed in SEEDS {
        let (mut layer, x, init, r) = case::<R>(t, seed);
        let m = manual(&mut layer, &x, &r);
        let n = numeric(&mut layer, &x, &init, &r);
        let c = candle_twin::sequence_grads(R::CELL, layer.weights(), &x, &init, &r)
            .expect("candle twin");
        worst = (
            worst.0.max(max_rel_error(&m, &n)),
            worst.1.max(max_rel_error(&m, &c)),
            worst.2.max(max_rel_error(&n, &c)),
        );
    }
    worst
}
// ANCHOR_END: three_ways

/// One step: the cell alone, from a random state.
const ONE_STEP: usize = 1;
/// The unrolled sequence.
const STEPS: usize = 6;

#[test]
fn rnn_step_gradients_agree_three_ways() {
    assert_three_ways("rnn step", three_ways::<Rnn>(ONE_STEP));
}

#[test]
fn lstm_step_gradients_agree_three_ways() {
    assert_three_ways("lstm step", three_ways::<Lstm>(ONE_STEP));
}

#[test]
fn gru_step_gradients_agree_three_ways() {
    assert_three_ways("gru step", three_ways::<Gru>(ONE_STEP));
}

#[test]
fn rnn_bptt_gradients_agree_three_ways() {
    assert_three_ways("rnn sequence", three_ways::<Rnn>(STEPS));
}

#[test]
fn lstm_bptt_gradients_agree_three_ways() {
    assert_three_ways("lstm sequence", three_ways::<Lstm>(STEPS));
}

#[test]
fn gru_bptt_gradients_agree_three_ways() {
    assert_three_ways("gru sequence", three_ways::<Gru>(STEPS));
}

/// The from-scratch outputs and final state against the twin's forward pass.
fn forward_vs_twin<R: Recurrent>() -> f64 {
    let mut e = 0.0f64;
    for seed in SEEDS {
        let (mut layer, x, init, _) = case::<R>(STEPS, 20 + seed);
        let y = layer.forward(&x, Mode::Eval);
        let (yc, last) =
            candle_twin::sequence_forward(R::CELL, layer.weights(), &x, &init).unwrap();
        e = e.max(rel_error(&f64v(&y), &yc));
        for (a, b) in layer.last().iter().zip(&last) {
            e = e.max(rel_error(&f64v(a), b));
        }
    }
    e
}

#[test]
fn recurrent_forward_matches_the_candle_twin() {
    for (who, e) in [
        ("rnn", forward_vs_twin::<Rnn>()),
        ("lstm", forward_vs_twin::<Lstm>()),
        ("gru", forward_vs_twin::<Gru>()),
    ] {
        eprintln!("{who} forward vs twin: {e:e}");
        assert!(e < 1e-5, "{who} forward vs twin: {e:e}");
    }
}

// ANCHOR: lstm_vs_candle_nn
/// The largest relative disagreement between the from-scratch [`Lstm`] and
/// `candle_nn::rnn::lstm` (in `F64`) loaded with the same weights by PyTorch name, over
/// every step's output and the final $h$ and $c$, from a random initial state.
fn lstm_vs_candle_nn() -> f64 {
    let mut e = 0.0f64;
    for seed in SEEDS {
        let (mut ours, x, init, _) = case::<Lstm>(STEPS, 40 + seed);
        let y = ours.forward(&x, Mode::Eval);
        let map = candle_nn_varmap(&ours.weights, DType::F64).unwrap();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let theirs = candle_nn::rnn::lstm(D_IN, HID, LSTMConfig::default(), vb).unwrap();
        let (h0, c0) = (
            to_tensor(&init[0], DType::F64),
            to_tensor(&init[1], DType::F64),
        );
        let start = LSTMState::new(h0.unwrap(), c0.unwrap());
        let xt = to_tensor(&x, DType::F64).unwrap();
        let states = theirs.seq_init(&xt, &start).unwrap();
        let y_theirs = theirs.states_to_tensor(&states).unwrap(); // (b, t, h)
        let last = states.last().unwrap();
        let (h_t, c_t) = ours.final_state().unwrap();
        e = e
            .max(rel_error(&f64v(&y), &to_array(&y_theirs).unwrap()))
            .max(rel_error(
                &f64v(&h_t.clone().into_dyn()),
                &to_array(last.h()).unwrap(),
            ))
            .max(rel_error(
                &f64v(&c_t.clone().into_dyn()),
                &to_array(last.c()).unwrap(),
            ));
    }
    e
}
// ANCHOR_END: lstm_vs_candle_nn

/// The same for the [`Gru`] and `candle_nn::rnn::gru`.
fn gru_vs_candle_nn() -> f64 {
    let mut e = 0.0f64;
    for seed in SEEDS {
        let (mut ours, x, init, _) = case::<Gru>(STEPS, 50 + seed);
        let y = ours.forward(&x, Mode::Eval);
        let map = candle_nn_varmap(&ours.weights, DType::F64).unwrap();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let theirs = candle_nn::rnn::gru(D_IN, HID, GRUConfig::default(), vb).unwrap();
        let start = GRUState {
            h: to_tensor(&init[0], DType::F64).unwrap(),
        };
        let xt = to_tensor(&x, DType::F64).unwrap();
        let states = theirs.seq_init(&xt, &start).unwrap();
        // candle-nn's GRU concatenates its states along the features; stack them instead.
        let hs: Vec<Tensor> = states.iter().map(|s| s.h().clone()).collect();
        let y_theirs = Tensor::stack(&hs, 1).unwrap(); // (b, t, h)
        let h_t = ours.final_state().unwrap().clone().into_dyn();
        e = e
            .max(rel_error(&f64v(&y), &to_array(&y_theirs).unwrap()))
            .max(rel_error(&f64v(&h_t), &to_array(&hs[STEPS - 1]).unwrap()));
    }
    e
}

#[test]
fn lstm_matches_candle_nn_lstm() {
    let e = lstm_vs_candle_nn();
    eprintln!("lstm vs candle-nn: {e:e}");
    assert!(e < 1e-5, "lstm vs candle-nn: {e:e}");
}

#[test]
fn gru_matches_candle_nn_gru() {
    let e = gru_vs_candle_nn();
    eprintln!("gru vs candle-nn: {e:e}");
    assert!(e < 1e-5, "gru vs candle-nn: {e:e}");
}

/// The layers' parameters carry PyTorch's names and shapes, so candle-nn's layers load
/// them with the `_l0` suffix and nothing else.
#[test]
fn recurrent_parameters_have_pytorch_names_and_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut net = Named::new();
    net.push("rnn", Rnn::new(5, 7, &mut rng));
    net.push("lstm", Lstm::new(7, 6, &mut rng));
    net.push("gru", Gru::new(6, 4, &mut rng));
    let mut got = vec![];
    net.visit_params("", &mut |n, p| {
        got.push((n.to_string(), p.value.shape().to_vec()))
    });
    let want: Vec<(String, Vec<usize>)> =
        [("rnn", 1, 5, 7), ("lstm", 4, 7, 6), ("gru", 3, 6, 4)]
            .iter()
            .flat_map(|&(l, g, d, h)| {
                [
                    (format!("{l}.weight_ih"), vec![g * h, d]),
                    (format!("{l}.weight_hh"), vec![g * h, h]),
                    (format!("{l}.bias_ih"), vec![g * h]),
                    (format!("{l}.bias_hh"), vec![g * h]),
                ]
            })
            .collect();
    assert_eq!(got, want);
}

#[test]
#[should_panic(
    expected = "Lstm::forward: expected a sequence batch (b, t, 3), got [2, 5, 4]"
)]
fn recurrent_layer_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Lstm::new(3, 4, &mut rng);
    let _ = layer.forward(&ArrayD::zeros(vec![2, 5, 4]), Mode::Eval);
}

/// Without a need for `dx` (the first layer of a network) the parameter gradients are
/// those of the full backward pass, exactly.
#[test]
fn backward_params_gives_the_same_parameter_gradients() {
    fn check<R: Recurrent>() {
        let (mut a, x, _, r) = case::<R>(STEPS, 9);
        let mut b = a.clone();
        let _ = a.forward(&x, Mode::Train);
        let _ = a.backward(&r);
        let _ = b.forward(&x, Mode::Train);
        b.backward_params(r.clone());
        let (mut ga, mut gb) = (vec![], vec![]);
        a.visit_params("", &mut |_, p| ga.push(p.grad.clone()));
        b.visit_params("", &mut |_, p| gb.push(p.grad.clone()));
        assert_eq!(ga, gb);
    }
    check::<Rnn>();
    check::<Lstm>();
    check::<Gru>();
}

// ANCHOR: chunks_vs_whole
/// The largest relative difference between one forward pass over a sequence and two
/// passes over its two halves with `carry_state`: outputs of every step.
fn chunks_vs_whole<R: Recurrent>() -> f64 {
    let (mut layer, x, _, _) = case::<R>(8, 60);
    layer.reset_state(); // start from zeros
    let whole = layer.forward(&x, Mode::Eval);
    layer.set_carry(true);
    let first = layer.forward(&steps(&x, 0..3), Mode::Eval);
    let second = layer.forward(&steps(&x, 3..8), Mode::Eval);
    let joined = ndarray::concatenate(Axis(1), &[first.view(), second.view()]).unwrap();
    rel_error(&f64v(&whole), &f64v(&joined))
}
// ANCHOR_END: chunks_vs_whole

#[test]
fn carried_state_chunks_equal_one_long_forward() {
    for (who, e) in [
        ("rnn", chunks_vs_whole::<Rnn>()),
        ("lstm", chunks_vs_whole::<Lstm>()),
        ("gru", chunks_vs_whole::<Gru>()),
    ] {
        eprintln!("{who}: chunks vs whole {e:e}");
        assert!(e < 1e-6, "{who}: chunks vs whole {e:e}");
    }
}

fn param_grads(layer: &mut dyn Layer) -> Grads {
    let mut params = vec![];
    layer.visit_params("", &mut |n, p| params.push((n.to_string(), f64v(&p.grad))));
    Grads {
        dx: ArrayD::zeros(vec![0]),
        params,
    }
}

// ANCHOR: truncated_bptt
/// An LSTM over 8 steps, trained as two chunks of 4 with `carry_state` (truncated BPTT),
/// as one sequence (full BPTT), and as two separate sequences, the second starting from
/// the first's final state given as a constant. Returns the relative differences of the
/// parameter gradients truncated vs full and truncated vs constant state, and of the
/// first chunk's `dx`, truncated vs full.
fn truncated_vs_full() -> (f64, f64, f64) {
    let (base, x, _, r) = case::<Lstm>(8, 70);
    let (x1, x2) = (steps(&x, 0..4), steps(&x, 4..8));
    let (r1, r2) = (steps(&r, 0..4), steps(&r, 4..8));

    let mut full = base.clone();
    full.reset_state();
    let _ = full.forward(&x, Mode::Train);
    let dx_full = full.backward(&r);

    let mut truncated = base.clone();
    truncated.reset_state();
    truncated.carry_state = true;
    let _ = truncated.forward(&x1, Mode::Train);
    let dx1 = truncated.backward(&r1);
    let _ = truncated.forward(&x2, Mode::Train);
    let _ = truncated.backward(&r2);

    let mut constant = base.clone();
    constant.reset_state();
    let _ = constant.forward(&x1, Mode::Train);
    let _ = constant.backward(&r1);
    let (h4, c4) = constant.final_state().unwrap();
    constant.set_initial_state(h4.clone(), c4.clone());
    let _ = constant.forward(&x2, Mode::Train);
    let _ = constant.backward(&r2);

    let (gf, gt, gc) = (
        param_grads(&mut full),
        param_grads(&mut truncated),
        param_grads(&mut constant),
    );
    let dx_full_1 = steps(&dx_full, 0..4);
    (
        max_rel_error(&gt, &gf),
        max_rel_error(&gt, &gc),
        rel_error(&f64v(&dx1), &f64v(&dx_full_1)),
    )
}
// ANCHOR_END: truncated_bptt

#[test]
fn truncated_bptt_stops_at_the_chunk_boundary() {
    let (vs_full, vs_constant, dx_first) = truncated_vs_full();
    eprintln!("truncated vs full {vs_full:e}, vs constant state {vs_constant:e}, first chunk dx vs full {dx_first:e}");
    // The gradient of the second chunk does not reach the first: the truncated gradient
    // is the one with the carried state as a constant, to the bit ...
    assert_eq!(vs_constant, 0.0, "truncated vs constant state");
    // ... and it is not the full gradient, for the weights or for the first chunk's input.
    assert!(vs_full > 1e-3, "truncated vs full {vs_full:e}");
    assert!(dx_first > 1e-3, "first chunk dx vs full {dx_first:e}");
}

// ANCHOR: reset_through_named
/// A per-step read-out after a carrying LSTM, in `Named`: the output on a chunk after
/// another chunk, the same after `reset_state`, and a fresh copy's output on that chunk.
fn reset_through_named() -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(80);
    let mut lstm = Lstm::new(D_IN, HID, &mut rng);
    lstm.carry_state = true;
    let head = Linear::new(HID, 2, Init::Xavier, &mut rng);
    let (a, b) = (
        normal(&[B, 5, D_IN], &mut rng),
        normal(&[B, 5, D_IN], &mut rng),
    );
    let mut net = Named::new();
    net.push("lstm", lstm.clone());
    net.push("head", head.clone());
    let mut fresh = Named::new();
    fresh.push("lstm", lstm);
    fresh.push("head", head);
    let _ = net.forward(&a, Mode::Eval);
    let carried = net.forward(&b, Mode::Eval);
    net.reset_state();
    let after_reset = net.forward(&b, Mode::Eval);
    (carried, after_reset, fresh.forward(&b, Mode::Eval))
}
// ANCHOR_END: reset_through_named

#[test]
fn reset_state_through_named_starts_a_new_sequence() {
    let (carried, after_reset, fresh) = reset_through_named();
    assert_eq!(carried.shape(), &[B, 5, 2]);
    assert_eq!(
        after_reset, fresh,
        "after reset_state the stack starts from zeros"
    );
    assert!(
        rel_error(&f64v(&carried), &f64v(&fresh)) > 1e-3,
        "a carried state changes the output"
    );
}

#[test]
fn carried_state_is_not_a_buffer() {
    let mut rng = ChaCha8Rng::seed_from_u64(81);
    let mut lstm = Lstm::new(D_IN, HID, &mut rng);
    lstm.carry_state = true;
    let _ = lstm.forward(&normal(&[B, 3, D_IN], &mut rng), Mode::Train);
    let mut n = 0;
    lstm.visit_buffers("", &mut |_, _| n += 1);
    assert_eq!(n, 0, "a checkpoint must not hold the run's carried state");
    assert_eq!(lstm.n_params(), 4 * HID * (D_IN + HID + 2));
}

// ANCHOR: linear_on_sequences
/// `Linear` on a sequence batch `(b, t, d)` against `Linear` on its rows `(b t, d)`: the
/// outputs, `dx` and the weight gradients, as `(max |difference|)` over all of them.
fn linear_on_sequences() -> f32 {
    let mut rng = ChaCha8Rng::seed_from_u64(90);
    let mut seq = Linear::new(5, 3, Init::Xavier, &mut rng);
    let mut flat = seq.clone();
    let x = normal(&[4, 6, 5], &mut rng);
    let dy = normal(&[4, 6, 3], &mut rng);
    let y = seq.forward(&x, Mode::Train);
    let dx = seq.backward(&dy);
    let rows =
        |a: &ArrayD<f32>, d: usize| a.clone().into_shape_with_order(vec![24, d]).unwrap();
    let y_flat = flat.forward(&rows(&x, 5), Mode::Train);
    let dx_flat = flat.backward(&rows(&dy, 3));
    assert_eq!((y.shape(), dx.shape()), (&[4, 6, 3][..], &[4, 6, 5][..]));
    let diff = |a: &ArrayD<f32>, b: &ArrayD<f32>| {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
    };
    diff(&rows(&y, 3), &y_flat)
        .max(diff(&rows(&dx, 5), &dx_flat))
        .max(diff(&seq.weight.grad, &flat.weight.grad))
        .max(diff(&seq.bias.grad, &flat.bias.grad))
}
// ANCHOR_END: linear_on_sequences

#[test]
fn linear_on_sequences_is_linear_on_their_rows() {
    assert_eq!(linear_on_sequences(), 0.0);
}

#[test]
#[should_panic(expected = "Linear::forward: expected shape (n, ..., 5), got [4, 6, 4]")]
fn linear_on_sequences_panics_naming_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Linear::new(5, 3, Init::He, &mut rng);
    let _ = layer.forward(&ArrayD::zeros(vec![4, 6, 4]), Mode::Eval);
}

/// A batch of token ids `(b, t)` with repeats, as `f32`.
fn ids() -> ArrayD<f32> {
    ArrayD::from_shape_vec(vec![2, 4], vec![3., 0., 3., 5., 1., 3., 0., 2.]).unwrap()
}

// ANCHOR: embedding_three_ways
/// The embedding's weight gradient three ways (`(manual-fd, manual-candle, fd-candle)`),
/// on ids with repeats, over three seeds.
fn embedding_three_ways() -> (f64, f64, f64) {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut emb = Embedding::new(6, 3, &mut rng);
        let (x, r) = (ids(), normal(&[2, 4, 3], &mut rng));
        emb.zero_grad();
        let _ = emb.forward(&x, Mode::Train);
        let dx = emb.backward(&r);
        assert!(dx.iter().all(|&v| v == 0.0) && dx.shape() == x.shape());
        let manual = f64v(&emb.weight.grad);
        let w0 = emb.weight.value.clone();
        let numeric = finite_diff(&w0, H, |w| {
            emb.weight.value.assign(w);
            contract(&emb.forward(&x, Mode::Train), &r)
        });
        emb.weight.value.assign(&w0);
        let wv = Var::from_tensor(&to_tensor(&w0, DType::F64).unwrap()).unwrap();
        let idx: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        let idx = Tensor::from_vec(idx, (2, 4), &Device::Cpu).unwrap();
        let y = candle_nn::Embedding::new(wv.as_tensor().clone(), 3)
            .forward(&idx)
            .unwrap();
        let loss = (y * to_tensor(&r, DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let candle = to_array(loss.backward().unwrap().get(&wv).unwrap()).unwrap();
        worst = (
            worst.0.max(rel_error(&manual, &numeric)),
            worst.1.max(rel_error(&manual, &candle)),
            worst.2.max(rel_error(&numeric, &candle)),
        );
    }
    worst
}
// ANCHOR_END: embedding_three_ways

#[test]
fn embedding_gradients_agree_three_ways() {
    assert_three_ways("embedding", embedding_three_ways());
}

#[test]
fn embedding_looks_up_rows() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut emb = Embedding::new(6, 3, &mut rng);
    let y = emb.forward(&ids(), Mode::Eval);
    assert_eq!(y.shape(), &[2, 4, 3]);
    let w = emb
        .weight
        .value
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_eq!(y.slice(s![1, 1, ..]), w.row(3));
    assert_eq!(y.slice(s![0, 3, ..]), w.row(5));
}

#[test]
#[should_panic(expected = "id 2.5 in input [1, 2] is not an integer in 0..6")]
fn embedding_rejects_a_non_integer_id() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut emb = Embedding::new(6, 3, &mut rng);
    let _ = emb.forward(
        &ArrayD::from_shape_vec(vec![1, 2], vec![1.0, 2.5]).unwrap(),
        Mode::Eval,
    );
}

#[test]
#[should_panic(expected = "id 6 in input [1, 2] is not an integer in 0..6")]
fn embedding_rejects_an_id_out_of_range() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut emb = Embedding::new(6, 3, &mut rng);
    let _ = emb.forward(
        &ArrayD::from_shape_vec(vec![1, 2], vec![6.0, 0.0]).unwrap(),
        Mode::Eval,
    );
}

// ANCHOR: forget_bias
/// An LSTM with the forget-gate bias initialised at 1, and the same layer (same seed)
/// without: the four bias slices of each.
fn forget_bias_slices() -> (Weights, Weights) {
    let with =
        Lstm::new(D_IN, HID, &mut ChaCha8Rng::seed_from_u64(5)).init_forget_bias(1.0);
    let without = Lstm::new(D_IN, HID, &mut ChaCha8Rng::seed_from_u64(5));
    (with.weights, without.weights)
}
// ANCHOR_END: forget_bias

#[test]
fn forget_bias_init_sets_the_forget_gate_total_bias() {
    let (with, without) = forget_bias_slices();
    let total = &with.bias_ih.value + &with.bias_hh.value;
    let f = s![HID..2 * HID];
    assert!(
        total.slice(f).iter().all(|&v| v == 1.0),
        "forget gate total bias is 1"
    );
    for (a, b) in [
        (&with.bias_ih, &without.bias_ih),
        (&with.bias_hh, &without.bias_hh),
    ] {
        for other in [s![..HID], s![2 * HID..]] {
            assert_eq!(
                a.value.slice(other),
                b.value.slice(other),
                "other gates untouched"
            );
        }
    }
    assert_eq!(with.weight_ih, without.weight_ih);
    assert_eq!(with.weight_hh, without.weight_hh);
    // Without the option, PyTorch's init leaves the forget bias near zero.
    let k = 1.0 / (HID as f32).sqrt();
    let t0 = &without.bias_ih.value + &without.bias_hh.value;
    assert!(t0.slice(f).iter().all(|&v| v.abs() <= 2.0 * k));
    assert!(2.0 * k <= 1.0);
}

// ANCHOR: stacked_three_ways
/// Two recurrent layers and a per-step read-out in `Named` (`lstm` then `gru` then
/// `head`), the gradients of every parameter by dotted name and of the input, three ways.
fn stacked_three_ways() -> (f64, f64, f64) {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for seed in SEEDS {
        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
        let (lstm, gru) = (Lstm::new(D_IN, HID, &mut rng), Gru::new(HID, 3, &mut rng));
        let head = Linear::new(3, 2, Init::Xavier, &mut rng);
        let x = normal(&[B, 4, D_IN], &mut rng);
        let r = normal(&[B, 4, 2], &mut rng);
        let (cl, cg) = (
            CandleWeights::new(&lstm.weights, DType::F64).unwrap(),
            CandleWeights::new(&gru.weights, DType::F64).unwrap(),
        );
        let hw = Var::from_tensor(&to_tensor(&head.weight.value, DType::F64).unwrap())
            .unwrap();
        let hb =
            Var::from_tensor(&to_tensor(&head.bias.value, DType::F64).unwrap()).unwrap();
        let mut net = Named::new();
        net.push("lstm", lstm);
        net.push("gru", gru);
        net.push("head", head);
        let m = manual_grads(&mut net, &x, &r);
        let n = numeric_grads(&mut net, &x, &r, H);

        let xv = Var::from_tensor(&to_tensor(&x, DType::F64).unwrap()).unwrap();
        let zeros = |h: usize| Tensor::zeros((B, h), DType::F64, &Device::Cpu).unwrap();
        let (y1, _) = candle_twin::sequence(
            Cell::Lstm,
            &cl,
            xv.as_tensor(),
            &[zeros(HID), zeros(HID)],
        )
        .unwrap();
        let (y2, _) = candle_twin::sequence(Cell::Gru, &cg, &y1, &[zeros(3)]).unwrap();
        let out = y2
            .broadcast_matmul(&hw.t().unwrap())
            .unwrap()
            .broadcast_add(hb.as_tensor())
            .unwrap();
        let loss = (out * to_tensor(&r, DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let grad = |v: &Var| to_array(g.get(v).unwrap()).unwrap();
        let mut params = vec![];
        for (layer, w) in [("lstm", &cl), ("gru", &cg)] {
            for (name, v) in [
                ("weight_ih", &w.w_ih),
                ("weight_hh", &w.w_hh),
                ("bias_ih", &w.b_ih),
                ("bias_hh", &w.b_hh),
            ] {
                params.push((format!("{layer}.{name}"), grad(v)));
            }
        }
        params.push(("head.weight".into(), grad(&hw)));
        params.push(("head.bias".into(), grad(&hb)));
        let c = Grads {
            dx: grad(&xv),
            params,
        };
        worst = (
            worst.0.max(max_rel_error(&m, &n)),
            worst.1.max(max_rel_error(&m, &c)),
            worst.2.max(max_rel_error(&n, &c)),
        );
    }
    worst
}
// ANCHOR_END: stacked_three_ways

#[test]
fn stacked_recurrent_layers_agree_three_ways() {
    assert_three_ways("lstm + gru + head", stacked_three_ways());
}

// ANCHOR: clipping
/// An LSTM's BPTT gradient before and after clipping its global norm to a tenth of
/// itself: `(norm before, norm after, threshold, largest relative change of direction)`.
fn clipped_lstm_gradient() -> (f64, f64, f64, f64) {
    let (mut layer, x, _, r) = case::<Lstm>(STEPS, 110);
    let _ = layer.forward(&x, Mode::Train);
    let _ = layer.backward(&(r * 10.0));
    let groups = ParamGroups::default();
    let before = param_grads(&mut layer);
    let threshold = (grad_norm(&mut layer, &groups) / 10.0) as f32;
    let norm = clip_grad_norm(&mut layer, &groups, threshold);
    let after = param_grads(&mut layer);
    let k = f64::from(threshold) / norm;
    let mut turned = 0.0f64;
    for ((_, a), (_, b)) in before.params.iter().zip(&after.params) {
        turned = turned.max(rel_error(&a.mapv(|v| v * k), b));
    }
    (
        norm,
        grad_norm(&mut layer, &groups),
        f64::from(threshold),
        turned,
    )
}
// ANCHOR_END: clipping

#[test]
fn clipping_bounds_the_norm_and_keeps_the_direction() {
    let (before, after, threshold, turned) = clipped_lstm_gradient();
    eprintln!("norm {before} -> {after} (threshold {threshold}), direction {turned:e}");
    assert!(before > threshold);
    assert!(
        (after - threshold).abs() < 1e-5 * threshold,
        "{after} vs {threshold}"
    );
    assert!(turned < 1e-6, "direction changed by {turned:e}");
}
