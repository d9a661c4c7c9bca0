//! Reading PyTorch `.pth` files (a state dict: tensor names to tensors) into `ndarray`.
//!
//! A `.pth` file is Python's pickle format plus raw tensor bytes. There are two layouts:
//!
//! - **zip** (PyTorch 1.6 and later): a zip archive with `data.pkl` and one file per
//!   storage. candle reads it ([`candle_core::pickle::read_all`]).
//! - **legacy** (before 1.6; EfficientNet-Lite0's file is one): five pickles in a row, then
//!   the storages. The pickles are a magic number, the protocol version (1001), a
//!   dictionary of system facts (byte order, integer sizes), the state dict itself, and
//!   the list of storage keys in the order their bytes follow. Each storage is then an
//!   8-byte little-endian element count and the elements.
//!
//! In both, a tensor is pickled as a call `_rebuild_tensor_v2(storage, offset, size,
//! stride)`: a *view* into a storage, with strides that need not be the row-major ones
//! (weights converted from TensorFlow are often stored channels-last). candle's pickle
//! machine ([`candle_core::pickle::Stack`]) evaluates the pickles; this module reads the
//! bytes, checks every view lies inside its storage, and copies each tensor into a
//! row-major [`ArrayD`]. A truncated or inconsistent file is an error that says what is
//! wrong, never a panic.

use std::collections::HashMap;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::DType;
use ndarray::{ArrayD, ArrayViewD, IxDyn, ShapeBuilder};

/// The largest `.pth` file [`read_pth`] reads (1 GiB): the whole file is held in memory.
pub const MAX_PTH_BYTES: u64 = 1 << 30;

/// The first 15 bytes of a legacy `.pth` file: a pickled long integer, PyTorch's magic
/// number `0x1950a86a20f9469cfc6c`.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
    0x2e,
];

/// One tensor of a state dict.
#[derive(Clone, Debug)]
pub struct PthTensor {
    /// Its name in the state dict (`_blocks.3._depthwise_conv.weight`).
    pub name: String,
    /// Its values, row-major, as `f32`; `None` for integer tensors (batch-norm's
    /// `num_batches_tracked` counters), which no layer reads.
    pub value: Option<ArrayD<f32>>,
    /// Its shape (also for integer tensors).
    pub shape: Vec<usize>,
}

// ANCHOR: read_pth
/// Reads every tensor of the state dict in the `.pth` file at `path`, in file order.
pub fn read_pth(path: &Path) -> Result<Vec<PthTensor>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    ensure!(
        len <= MAX_PTH_BYTES,
        "{}: {len} bytes, more than the {MAX_PTH_BYTES} this reader accepts",
        path.display()
    );
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = if bytes.starts_with(b"PK\x03\x04") {
        read_zip(path)
    } else if bytes.starts_with(&LEGACY_MAGIC) {
        read_legacy(&bytes)
    } else {
        bail!("not a PyTorch file (neither a zip archive nor the legacy magic number)")
    };
    parsed
        .with_context(|| format!("{}: not a readable PyTorch state dict", path.display()))
}
// ANCHOR_END: read_pth

/// The zip layout, through candle.
fn read_zip(path: &Path) -> Result<Vec<PthTensor>> {
    candle_core::pickle::read_all(path)?
        .into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let value = match t.dtype() {
                DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
                    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    Some(ArrayD::from_shape_vec(IxDyn(&shape), v)?)
                }
                _ => None,
            };
            Ok(PthTensor { name, value, shape })
        })
        .collect()
}

/// Evaluates the next pickle of `r`.
fn next_pickle(r: &mut BufReader<Cursor<&[u8]>>, what: &str) -> Result<Object> {
    let mut stack = Stack::empty();
    stack
        .read_loop(r)
        .with_context(|| format!("reading the {what} pickle"))?;
    Ok(stack.finalize()?)
}

// ANCHOR: read_legacy
/// The legacy layout: magic, protocol, system facts, state dict, storage keys, storages.
fn read_legacy(bytes: &[u8]) -> Result<Vec<PthTensor>> {
    let mut r = BufReader::new(Cursor::new(&bytes[LEGACY_MAGIC.len()..]));
    let protocol = next_pickle(&mut r, "protocol")?;
    ensure!(
        protocol == Object::Int(1001),
        "protocol {protocol:?}, expected 1001"
    );
    let facts = next_pickle(&mut r, "system facts")?;
    let little = Object::Unicode("little_endian".into());
    let little_endian = match &facts {
        Object::Dict(kv) => kv
            .iter()
            .any(|(k, v)| *k == little && *v == Object::Bool(true)),
        _ => false,
    };
    ensure!(little_endian, "written on a big-endian machine: {facts:?}");
    let Object::Dict(entries) = next_pickle(&mut r, "state dict")? else {
        bail!("the state dict is not a dictionary");
    };
    let Object::List(list) = next_pickle(&mut r, "storage keys")? else {
        bail!("the storage keys are not a list");
    };
    let keys = list
        .into_iter()
        .map(|o| {
            o.unicode()
                .map_err(|_| anyhow::anyhow!("a storage key is not a string"))
        })
        .collect::<Result<Vec<String>>>()?;
    let mut infos = vec![];
    for (name, value) in entries {
        // Entries that are not tensors (PyTorch keeps a `_metadata` of module versions
        // beside them) are skipped.
        if let Some(info) = value.into_tensor_info(name, Path::new(""))? {
            infos.push(info);
        }
    }
    let key_of = |info: &candle_core::pickle::TensorInfo| {
        info.path.trim_start_matches('/').to_string()
    };
    let elem_size: HashMap<String, usize> = infos
        .iter()
        .map(|i| (key_of(i), i.dtype.size_in_bytes()))
        .collect();
    // The storages follow, in the order of `keys`.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)?;
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut at = 0usize;
    for key in keys {
        let size = *elem_size
            .get(&key)
            .with_context(|| format!("storage {key} is used by no tensor"))?;
        let head = rest
            .get(at..at + 8)
            .with_context(|| format!("truncated before storage {key}"))?;
        let count = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        at += 8;
        let n = count
            .checked_mul(size as u64)
            .filter(|&b| b <= MAX_PTH_BYTES)
            .with_context(|| format!("storage {key}: {count} elements is too many"))?
            as usize;
        let body = rest
            .get(at..at + n)
            .with_context(|| format!("truncated in storage {key} ({count} elements)"))?;
        storages.insert(key, body);
        at += n;
    }
    let mut out = vec![];
    for info in infos {
        let key = key_of(&info);
        let storage = storages
            .get(&key)
            .with_context(|| format!("{}: storage {key} is missing", info.name))?;
        let layout = &info.layout;
        let shape = layout.dims().to_vec();
        let value = match info.dtype {
            DType::F32 => Some(
                strided_copy(storage, &shape, layout.stride(), layout.start_offset())
                    .with_context(|| {
                        format!("{}: view outside its storage", info.name)
                    })?,
            ),
            _ => None,
        };
        out.push(PthTensor {
            name: info.name,
            value,
            shape,
        });
    }
    Ok(out)
}
// ANCHOR_END: read_legacy

/// Copies the `f32` view `(shape, stride in elements, offset in bytes)` of `storage` into
/// a row-major array, or fails if the view reaches outside the storage.
fn strided_copy(
    storage: &[u8],
    shape: &[usize],
    stride: &[usize],
    offset_bytes: usize,
) -> Result<ArrayD<f32>> {
    let floats: Vec<f32> = storage
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let start = offset_bytes / 4;
    ensure!(start <= floats.len(), "offset {start} past the storage end");
    let view =
        ArrayViewD::from_shape(IxDyn(shape).strides(IxDyn(stride)), &floats[start..])?;
    Ok(view.to_owned().as_standard_layout().into_owned())
}
