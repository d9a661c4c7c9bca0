//! Model files: every parameter and buffer of a model in one
//! [safetensors](https://github.com/huggingface/safetensors) file, the format candle,
//! PyTorch and the Hugging Face hub read.
//!
//! A safetensors file is an 8-byte little-endian header length $n$, a JSON header of
//! $n$ bytes that maps each tensor name to its dtype, shape and byte range, and the raw
//! little-endian tensor data. Tensors are named by the dotted names of
//! [`Module::visit_params`] and [`Module::visit_buffers`] (`conv1.weight`,
//! `bn1.running_mean`) and stored as `F32`.
//!
//! [`save`] writes to a temporary file and renames it, so a crash never leaves half a
//! model under the final name. [`load`] checks the whole file against the model before
//! it changes a single weight: a tensor missing, a tensor the model does not have, a
//! wrong shape or a wrong dtype is an error naming the tensor, and the model is left as
//! it was. Nothing the header claims is allocated: the file is read (its real size), and
//! every byte range the header names is checked against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayViewMutD;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use thiserror::Error;

use crate::nn::Module;

/// What can go wrong reading or writing a model file.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error of the operating system.
        source: std::io::Error,
    },
    /// The bytes are not a safetensors file (or the file is truncated).
    #[error(
        "{path}: not a safetensors model file, or truncated ({detail}); save it again \
         with `checkpoint::save`"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser found.
        detail: String,
    },
    /// The model has a tensor the file does not.
    #[error(
        "{path}: tensor {name} is missing (the model wants {name} with shape {want:?})"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// Dotted name.
        name: String,
        /// The shape the model has.
        want: Vec<usize>,
    },
    /// The file has a tensor the model does not.
    #[error("{path}: unexpected tensor {name}: the model has no tensor of that name")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// Dotted name.
        name: String,
    },
    /// A tensor has another shape in the file than in the model.
    #[error("{path}: {name}: file has {file:?}, model wants {want:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Dotted name.
        name: String,
        /// Shape in the file.
        file: Vec<usize>,
        /// Shape in the model.
        want: Vec<usize>,
    },
    /// A tensor is not stored as `F32`.
    #[error("{path}: {name}: file has dtype {dtype}, model wants F32")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// Dotted name.
        name: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// Serialising the tensors failed.
    #[error("{path}: cannot serialise: {detail}")]
    Serialize {
        /// The file.
        path: PathBuf,
        /// What the safetensors writer said.
        detail: String,
    },
}

/// Every parameter and buffer of `model`: `(name, shape, values)`, parameters first.
fn tensors_of(model: &mut dyn Module) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = vec![];
    model.visit_params("", &mut |name, p| {
        out.push((
            name.to_string(),
            p.value.shape().to_vec(),
            p.value.iter().copied().collect(),
        ))
    });
    model.visit_buffers("", &mut |name, b| {
        out.push((
            name.to_string(),
            b.shape().to_vec(),
            b.iter().copied().collect(),
        ))
    });
    out
}

// ANCHOR: save
/// Writes every parameter and buffer of `model` to `path` as `F32` safetensors, named
/// by their dotted names. The file appears atomically (temporary file, then rename).
pub fn save(model: &mut dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let tensors = tensors_of(model);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let ser = |e: safetensors::SafeTensorError| CheckpointError::Serialize {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let mut views = vec![];
    for (name, shape, data) in &bytes {
        views.push((
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), data).map_err(ser)?,
        ));
    }
    let file = safetensors::serialize(views, None).map_err(ser)?;
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A temporary file and a rename: a crash never leaves half a file.
    crate::report::write_file_atomic(path, &file).map_err(io)
}
// ANCHOR_END: save

// ANCHOR: load
/// Reads `path` into `model`'s parameters and buffers. The file must hold exactly the
/// model's tensors, with the model's shapes, as `F32`; otherwise nothing is changed and
/// the error names the first tensor that does not fit.
pub fn load(model: &mut dyn Module, path: &Path) -> Result<(), CheckpointError> {
    let file = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&file).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let p = || path.to_path_buf();
    // What the model wants, in visiting order.
    let want: Vec<(String, Vec<usize>)> = tensors_of(model)
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let mut values: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (name, shape) in &want {
        let t = st.tensor(name).map_err(|_| CheckpointError::Missing {
            path: p(),
            name: name.clone(),
            want: shape.clone(),
        })?;
        if t.dtype() != Dtype::F32 {
            return Err(CheckpointError::Dtype {
                path: p(),
                name: name.clone(),
                dtype: format!("{:?}", t.dtype()),
            });
        }
        if t.shape() != shape.as_slice() {
            return Err(CheckpointError::Shape {
                path: p(),
                name: name.clone(),
                file: t.shape().to_vec(),
                want: shape.clone(),
            });
        }
        // The parser checked that the byte range is 4 bytes per element of the shape,
        // and the shape equals the model's: this allocates what the model has.
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        values.insert(name.clone(), v);
    }
    let mut names = st.names();
    names.sort();
    if let Some(extra) = names.into_iter().find(|n| !values.contains_key(*n)) {
        return Err(CheckpointError::Unexpected {
            path: p(),
            name: extra.to_string(),
        });
    }
    model.visit_params("", &mut |name, param| {
        assign(param.value.view_mut(), &values[name]);
    });
    model.visit_buffers("", &mut |name, b| assign(b, &values[name]));
    Ok(())
}
// ANCHOR_END: load

fn assign(mut dst: ArrayViewMutD<'_, f32>, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}
