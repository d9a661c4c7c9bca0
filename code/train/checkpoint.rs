//! Training checkpoints: everything a run depends on after epoch $k$, in one
//! safetensors file, so that training $k$ epochs, saving, loading into fresh objects and
//! training the rest gives bit for bit the model of a run that never stopped.
//!
//! The tensors are the model's parameters and buffers (`model.{name}`), the optimizer's
//! state (`opt.{key}`: velocities, moments) and, with early stopping, the best epoch's
//! weights (`best.{name}`), all `F32`. The small state goes in the file's metadata as
//! JSON under `dlbook.train`: the epoch and step counters, the order of the last epoch,
//! the position of the loop's generator and of every generator inside the model
//! ([`Module::visit_rngs`]: the dropout masks), the optimizer's scalars (Adam's step
//! count), early stopping's record and each callback's state. Floats in the JSON are
//! stored by their bit patterns, so that nothing is rounded on the way.
//!
//! [`load`] checks the whole file against the model before changing a weight: a missing,
//! unexpected or misshapen tensor, or metadata that is not ours, is an error naming what
//! is wrong. The file appears atomically (temporary file, then rename).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::callback::Callback;
use super::{snapshot, RunState, Snapshot};
use crate::models::checkpoint::CheckpointError as ModelError;
use crate::nn::{Layer, Module};
use crate::optim::{Optimizer, OptimizerState};

/// The metadata key of the JSON state.
pub const META_KEY: &str = "dlbook.train";
/// The version of the layout [`save`] writes.
pub const FORMAT: u32 = 1;

/// What can go wrong reading or writing a training checkpoint.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// A problem with the file or its tensors (the same as for a model file).
    #[error(transparent)]
    Tensors(#[from] ModelError),
    /// The metadata is missing, not ours, or does not fit this run.
    #[error(
        "{path}: {detail}; was it written by `train::checkpoint::save` for this run?"
    )]
    State {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        detail: String,
    },
}

/// The position of a ChaCha8 generator.
#[derive(Debug, Serialize, Deserialize)]
struct RngState {
    /// The 32-byte seed, in hex.
    seed: String,
    stream: u64,
    /// The word position (a `u128`, as a decimal string).
    word_pos: String,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn to_rng(&self) -> Result<ChaCha8Rng, String> {
        let bytes = self.seed.as_bytes();
        if bytes.len() != 64 {
            return Err(format!("rng seed {:?} is not 64 hex digits", self.seed));
        }
        let mut seed = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            seed[i] = u8::from_str_radix(s, 16)
                .map_err(|_| format!("rng seed {:?} is not hex", self.seed))?;
        }
        let pos: u128 = self.word_pos.parse().map_err(|_| {
            format!("rng word position {:?} is not a number", self.word_pos)
        })?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// The JSON state.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    format: u32,
    epoch: usize,
    step: usize,
    order: Vec<usize>,
    rng: RngState,
    layer_rngs: BTreeMap<String, RngState>,
    /// Optimizer scalars, by name, as `f64` bits.
    opt_scalars: BTreeMap<String, u64>,
    /// Early stopping: the best epoch and its score's bits.
    best: Option<(usize, u64)>,
    since_best: usize,
    callbacks: Vec<serde_json::Value>,
}

fn layer_rngs(model: &mut dyn Module) -> BTreeMap<String, ChaCha8Rng> {
    let mut out = BTreeMap::new();
    model.visit_rngs("", &mut |name, rng| {
        out.insert(name.to_string(), rng.clone());
    });
    out
}

/// Writes the state of a run after an epoch to `path`.
pub fn save(
    path: &Path,
    model: &mut dyn Layer,
    opt: &dyn Optimizer,
    state: &RunState,
    callbacks: &[&mut dyn Callback],
) -> Result<(), CheckpointError> {
    let opt_state = opt.save_state();
    let meta = State {
        format: FORMAT,
        epoch: state.epoch,
        step: state.step,
        order: state.order.clone(),
        rng: RngState::of(&state.rng),
        layer_rngs: layer_rngs(model)
            .iter()
            .map(|(n, r)| (n.clone(), RngState::of(r)))
            .collect(),
        opt_scalars: opt_state
            .scalars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_bits()))
            .collect(),
        best: state.best.as_ref().map(|(e, s, _)| (*e, s.to_bits())),
        since_best: state.since_best,
        callbacks: callbacks.iter().map(|c| c.state()).collect(),
    };
    let mut tensors: Vec<(String, ArrayD<f32>)> = vec![];
    let prefixed = |p: &str, s: Snapshot| {
        s.into_iter()
            .map(|(n, t)| (format!("{p}.{n}"), t))
            .collect::<Vec<_>>()
    };
    tensors.extend(prefixed("model", snapshot(model)));
    tensors.extend(prefixed("opt", opt_state.tensors.into_iter().collect()));
    if let Some((_, _, best)) = &state.best {
        tensors.extend(prefixed("best", best.clone()));
    }
    let json = serde_json::to_string(&meta).expect("the state serialises");
    write(path, &tensors, json)
}

fn write(
    path: &Path,
    tensors: &[(String, ArrayD<f32>)],
    json: String,
) -> Result<(), CheckpointError> {
    let ser = |e: safetensors::SafeTensorError| ModelError::Serialize {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let data = t.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.as_str(), t.shape().to_vec(), data)
        })
        .collect();
    let mut views = vec![];
    for (name, shape, data) in &bytes {
        views.push((
            *name,
            TensorView::new(Dtype::F32, shape.clone(), data).map_err(ser)?,
        ));
    }
    let meta = HashMap::from([(META_KEY.to_string(), json)]);
    let file = safetensors::serialize(views, Some(meta)).map_err(ser)?;
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A temporary file and a rename: a crash never leaves half a file.
    crate::report::write_file_atomic(path, &file).map_err(io)?;
    Ok(())
}

/// Reads the `F32` tensor `name` of shape `want` from `st`.
fn read_tensor(
    st: &SafeTensors,
    path: &Path,
    name: &str,
    want: &[usize],
) -> Result<ArrayD<f32>, ModelError> {
    let t = st.tensor(name).map_err(|_| ModelError::Missing {
        path: path.to_path_buf(),
        name: name.to_string(),
        want: want.to_vec(),
    })?;
    read_view(&t, path, name, Some(want))
}

fn read_view(
    t: &TensorView,
    path: &Path,
    name: &str,
    want: Option<&[usize]>,
) -> Result<ArrayD<f32>, ModelError> {
    if t.dtype() != Dtype::F32 {
        return Err(ModelError::Dtype {
            path: path.to_path_buf(),
            name: name.to_string(),
            dtype: format!("{:?}", t.dtype()),
        });
    }
    if let Some(want) = want {
        if t.shape() != want {
            return Err(ModelError::Shape {
                path: path.to_path_buf(),
                name: name.to_string(),
                file: t.shape().to_vec(),
                want: want.to_vec(),
            });
        }
    }
    // The parser checked that the byte range holds 4 bytes per element of the shape.
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(t.shape()), v).expect("shape checked by the parser"))
}

// ANCHOR: load
/// Reads the checkpoint at `path` into `model`, `opt` and `callbacks` (in the order
/// they were saved) and returns the run state to continue from with
/// [`fit_from`](super::fit_from). `n_train` is the size of the training set, which the
/// saved order must match. Everything is checked before the model changes: on an error
/// the model is as it was.
pub fn load(
    path: &Path,
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    callbacks: &mut [&mut dyn Callback],
    n_train: usize,
) -> Result<RunState, CheckpointError> {
    let p = || path.to_path_buf();
    let bad = |detail: String| CheckpointError::State { path: p(), detail };
    let file =
        std::fs::read(path).map_err(|source| ModelError::Io { path: p(), source })?;
    let format = |e: safetensors::SafeTensorError| ModelError::Format {
        path: p(),
        detail: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&file).map_err(format)?;
    let st = SafeTensors::deserialize(&file).map_err(format)?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad(format!("no {META_KEY} metadata (a model file?)")))?;
    let s: State = serde_json::from_str(json)
        .map_err(|e| bad(format!("{META_KEY} metadata: {e}")))?;
    if s.format != FORMAT {
        return Err(bad(format!(
            "format {} (this build reads {FORMAT})",
            s.format
        )));
    }
    let mut order_sorted = s.order.clone();
    order_sorted.sort_unstable();
    if order_sorted.len() != n_train
        || order_sorted.iter().enumerate().any(|(i, &k)| i != k)
    {
        return Err(bad(format!(
            "the saved order is not a permutation of the {n_train} training examples"
        )));
    }
    if s.callbacks.len() != callbacks.len() {
        return Err(bad(format!(
            "{} callback states saved, {} callbacks given",
            s.callbacks.len(),
            callbacks.len()
        )));
    }
    // The model: every tensor, with its shape.
    let current = snapshot(model);
    let mut values = vec![];
    for (name, t) in &current {
        values.push(read_tensor(&st, path, &format!("model.{name}"), t.shape())?);
    }
    let best = match s.best {
        Some((epoch, bits)) => {
            let mut w = vec![];
            for (name, t) in &current {
                let v = read_tensor(&st, path, &format!("best.{name}"), t.shape())?;
                w.push((name.clone(), v));
            }
            Some((epoch, f64::from_bits(bits), w))
        }
        None => None,
    };
    let mut opt_state = OptimizerState::default();
    for (name, view) in st.tensors() {
        let known = |prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|n| n.strip_prefix('.'))
                .is_some_and(|n| current.iter().any(|(c, _)| c == n))
        };
        if let Some(key) = name.strip_prefix("opt.") {
            // Optimizer keys end with the name of their parameter (`m.fc1.weight`),
            // whose shape they must have: the optimizer would panic on another.
            let of = current.iter().find(|(c, t)| {
                key.ends_with(&format!(".{c}")) && t.shape() == view.shape()
            });
            if of.is_none() {
                return Err(bad(format!(
                    "optimizer tensor {key} of shape {:?} belongs to no parameter",
                    view.shape()
                )));
            }
            opt_state
                .tensors
                .insert(key.to_string(), read_view(&view, path, &name, None)?);
        } else if !(known("model") || (s.best.is_some() && known("best"))) {
            return Err(ModelError::Unexpected { path: p(), name }.into());
        }
    }
    opt_state.scalars = s
        .opt_scalars
        .iter()
        .map(|(k, &b)| (k.clone(), f64::from_bits(b)))
        .collect();
    let mut rngs = BTreeMap::new();
    for (name, r) in &s.layer_rngs {
        rngs.insert(name.clone(), r.to_rng().map_err(&bad)?);
    }
    let want: Vec<String> = layer_rngs(model).into_keys().collect();
    if want != rngs.keys().cloned().collect::<Vec<_>>() {
        return Err(bad(format!(
            "generators {:?} saved, the model has {want:?}",
            rngs.keys().collect::<Vec<_>>()
        )));
    }
    let rng = s.rng.to_rng().map_err(&bad)?;
    // Everything fits: now change things.
    for (c, v) in callbacks.iter_mut().zip(&s.callbacks) {
        c.load_state(v).map_err(&bad)?;
    }
    opt.load_state(opt_state)
        .map_err(|e| bad(format!("optimizer: {e}")))?;
    let mut it = values.into_iter();
    model.visit_params("", &mut |_, p| p.value = it.next().expect("checked"));
    model.visit_buffers("", &mut |_, mut b| b.assign(&it.next().expect("checked")));
    model.visit_rngs("", &mut |name, r| *r = rngs[name].clone());
    Ok(RunState {
        epoch: s.epoch,
        step: s.step,
        rng,
        order: s.order,
        best,
        since_best: s.since_best,
    })
}
// ANCHOR_END: load
