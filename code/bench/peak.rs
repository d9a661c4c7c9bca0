//! The machine's ceiling: the fused multiply-add peak, measured.
//!
//! A core retires a fixed number of FMA instructions per cycle, and each does
//! `2 * lanes` floating-point operations (a multiply and an add per `f32` lane). The peak
//! is reached only when no FMA waits for the previous one: an FMA has a latency of a few
//! cycles, so a kernel needs at least `latency * FMAs per cycle` independent
//! accumulators. [`fma_kernel`] keeps [`ACCUMULATORS`] of them, each started at 0 and
//! updated as `acc = acc * a + b` with `a = 0.999`, `b = 0.001`, so after $k$ rounds it
//! holds $1 - a^k$: it never overflows or turns denormal, and the result shows how many
//! rounds ran. It uses the widest vectors the CPU offers.

use std::hint::black_box;
use std::time::Instant;

/// Independent accumulator registers in the FMA kernel: more than latency times
/// throughput on current x86 cores (4 cycles times 2 FMAs per cycle).
pub const ACCUMULATORS: usize = 16;

/// The instruction set the peak kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// 512-bit vectors, `_mm512_fmadd_ps`: 16 lanes.
    Avx512,
    /// 256-bit vectors, `_mm256_fmadd_ps`: 8 lanes.
    Avx2,
    /// Plain `f32::mul_add`, one lane.
    Scalar,
}

impl Isa {
    /// The widest FMA the running CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// `f32` lanes per instruction.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Scalar => 1,
        }
    }

    /// A display name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512 FMA",
            Isa::Avx2 => "AVX2 FMA",
            Isa::Scalar => "scalar FMA",
        }
    }
}

// ANCHOR: fma_avx512
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999);
    let b = _mm512_set1_ps(0.001);
    let mut acc = [_mm512_setzero_ps(); ACCUMULATORS];
    for _ in 0..iters {
        // ACCUMULATORS independent chains: no FMA waits for another.
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut total = _mm512_setzero_ps();
    for r in acc {
        total = _mm512_add_ps(total, r);
    }
    _mm512_reduce_add_ps(total)
}
// ANCHOR_END: fma_avx512

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999);
    let b = _mm256_set1_ps(0.001);
    let mut acc = [_mm256_setzero_ps(); ACCUMULATORS];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let mut total = _mm256_setzero_ps();
    for r in acc {
        total = _mm256_add_ps(total, r);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), total);
    out.iter().sum()
}

fn fma_scalar(iters: u64) -> f32 {
    let (a, b) = (black_box(0.999f32), black_box(0.001f32));
    let mut acc = [0.0f32; ACCUMULATORS];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = r.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

/// Runs `iters` rounds of [`ACCUMULATORS`] independent FMAs on `isa`; returns the
/// accumulated value (to keep the work observable).
///
/// Panics if `isa` is not supported by this CPU.
pub fn fma_kernel(isa: Isa, iters: u64) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(is_x86_feature_detected!("avx512f"), "CPU lacks AVX-512");
            // SAFETY: the feature was just detected.
            unsafe { fma_avx512(iters) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                "CPU lacks AVX2 + FMA"
            );
            // SAFETY: the features were just detected.
            unsafe { fma_avx2(iters) }
        }
        _ => fma_scalar(iters),
    }
}

/// The floating-point operations of one [`fma_kernel`] call.
pub fn kernel_flops(isa: Isa, iters: u64) -> f64 {
    2.0 * (isa.lanes() * ACCUMULATORS) as f64 * iters as f64
}

/// Measured FMA throughput in GFLOP/s with `threads` threads each running
/// [`fma_kernel`] for `iters` rounds at once.
pub fn fma_gflops(isa: Isa, threads: usize, iters: u64) -> f64 {
    assert!(threads > 0, "fma_gflops: threads must be positive");
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || black_box(fma_kernel(isa, black_box(iters)))))
            .collect();
        for h in handles {
            h.join().expect("an FMA thread panicked");
        }
    });
    let secs = t.elapsed().as_secs_f64();
    threads as f64 * kernel_flops(isa, iters) / secs / 1e9
}
