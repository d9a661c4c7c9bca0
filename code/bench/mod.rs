//! `dlbook bench`: how fast the from-scratch CNN trains and infers, against what the
//! machine can do.
//!
//! One run measures, side by side: the training throughput of the seed MNIST CNN
//! (images/s at batch 128: forward, loss, backward, Adam step), inference at batch 1 and
//! batch 256, a per-layer profile (forward and backward milliseconds per batch), the
//! FLOPs of a training step counted analytically and the GFLOP/s they amount to, the
//! FMA peak of the CPU measured on one and on all threads ([`peak`]), SGEMM at
//! $n = 2048$ with the matrix product the layers use, and the CPU time per 1,000
//! training images on one thread (a figure that other load on the machine barely moves).
//!
//! Each figure is the median of several runs, with its minimum and maximum, and the
//! 1-minute load average is recorded before and after: timings on a shared machine are
//! noisy, and the report says how noisy. Timings are never asserted by tests.
//!
//! **FLOP count.** A convolution with output $(C_o, H_o, W_o)$ and kernel
//! $(C_i, K_h, K_w)$ does $C_o H_o W_o C_i K_h K_w$ multiply-adds per image, a linear
//! layer $d_\text{in} d_\text{out}$ (counted from the model's description by
//! [`models::count`](crate::models::count), the counter of the architectures table);
//! each is 2 FLOPs. The backward pass computes two products of the same size (the
//! weight gradient and the input gradient), so a training step costs three times the
//! forward FLOPs of these layers. Element-wise work
//! (ReLU, pooling, dropout, loss, Adam) is not counted: it is memory traffic, not
//! arithmetic, and it is why the achieved fraction of peak is below one.

use serde::{Deserialize, Serialize};

use crate::models::count::{count, seed_cnn_spec};
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::Named;

pub mod arima;
pub mod backbone;
pub mod candle;
pub mod char_lstm;
pub mod cluster;
pub mod depthwise;
pub mod detector;
pub mod ensemble;
pub mod gpt;
pub mod hmm;
mod measure;
pub mod mha;
pub mod minilm;
pub mod monitor;
pub mod peak;
pub mod python;
mod registry;
pub mod rnn_cells;
pub mod serve;
mod steps;
pub mod svm;
mod tables;

pub use measure::{
    layer_gemm, load_average, median_min_max, process_cpu_seconds, profile, profile_text,
    synthetic_batch, thread_cpu_seconds, time_cpu_wall, time_inference, time_runs,
    time_sgemm, time_training, train_step, Clock, CpuWall,
};
pub use registry::{find, seed_cnn_config, Options, Timing, TIMINGS};
pub use tables::{run, REFERENCE};

/// What to measure, and how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Training batch size.
    pub batch_size: usize,
    /// Training steps timed per run.
    pub steps: usize,
    /// Runs per figure (the median is reported).
    pub runs: usize,
    /// Batch sizes of the inference measurements.
    pub infer_batches: Vec<usize>,
    /// Images pushed through the model per inference run (at least one batch).
    pub infer_images: usize,
    /// Matrix size of the SGEMM measurement.
    pub gemm_n: usize,
    /// Rounds of the FMA peak kernel per thread.
    pub peak_iters: u64,
    /// Threads for the multi-threaded figures.
    pub threads: usize,
    /// Seed of the weights, the synthetic images and the dropout masks.
    pub seed: u64,
}

impl Config {
    /// A run of a few seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        Config {
            batch_size: 16,
            steps: 2,
            runs: 2,
            infer_batches: vec![1, 8],
            infer_images: 16,
            gemm_n: 128,
            peak_iters: 100_000,
            threads: 2,
            seed: 0,
        }
    }

    /// The figures in the book.
    pub fn full() -> Self {
        Config {
            batch_size: 128,
            steps: 20,
            runs: 5,
            infer_batches: vec![1, 256],
            infer_images: 2048,
            gemm_n: 2048,
            peak_iters: 100_000_000,
            threads: 2,
            seed: 0,
        }
    }
}

/// The seed MNIST CNN of [`models`](crate::models), the model the book trains:
/// `reshape - conv1 - relu1 - pool1 - conv2 - relu2 - pool2 - flatten - fc1 - relu3 -
/// dropout - fc2`.
///
/// # Shapes
/// - input: `(n, 784)` or `(n, 1, 28, 28)`; output: logits `(n, 10)`.
pub fn seed_cnn(seed: u64) -> Named {
    mnist_cnn(&CnnConfig::default(), seed)
}

/// Multiply-adds per image of the seed CNN's convolutions and linear layers, by layer:
/// `(name, MACs)`, counted from its description by [`count`].
pub fn seed_cnn_macs() -> Vec<(String, u64)> {
    count((1, 28, 28), &seed_cnn_spec())
        .into_iter()
        .filter(|l| l.macs > 0)
        .map(|l| (l.name, l.macs as u64))
        .collect()
}

/// FLOPs of one training image: forward plus the two backward products, `3 * 2 * MACs`.
pub fn train_flops_per_image() -> f64 {
    seed_cnn_macs().iter().map(|(_, m)| 6.0 * *m as f64).sum()
}

// ANCHOR: keep_freed_memory
/// Tells the C allocator to keep freed memory for the next batch instead of giving it
/// back to the kernel. Called once by the `dlbook` command before any work.
///
/// A training step allocates and frees the same large activations every batch (the
/// output of `conv1` is 11 MB at batch 128). glibc serves blocks that large with
/// `mmap` and returns them with `munmap` when they are freed, so the next batch gets
/// fresh pages, and the kernel zeroes each 4 KiB page on its first touch: a page fault
/// per page, every batch, on every thread. Raising the `mmap` threshold (to its maximum,
/// 32 MiB) and the trim threshold makes freed blocks stay in the process, where the next
/// batch reuses them. Other platforms and allocators are left as they are.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
// ANCHOR_END: keep_freed_memory
