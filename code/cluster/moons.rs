//! Two interleaved half-circles, scikit-learn's `make_moons` recipe with our own seeded
//! generator: the classic set on which k-means fails and density-based clustering
//! succeeds.

use ndarray::Array2;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// `n` points of two moons with Gaussian noise of standard deviation `noise`, shuffled,
/// and their moon (0 the upper, 1 the lower).
///
/// The upper moon is $(\cos t, \sin t)$ and the lower $(1 - \cos t, \tfrac12 - \sin t)$
/// for $t$ evenly spaced on $[0, \pi]$; the first gets $\lfloor n/2\rfloor$ points.
///
/// # Panics
/// If `noise` is negative or not finite (a programmer's error: the generator reads no
/// outside data).
pub fn make_moons(n: usize, noise: f64, seed: u64) -> (Array2<f64>, Vec<usize>) {
    assert!(
        noise >= 0.0 && noise.is_finite(),
        "make_moons: noise must be >= 0, got {noise}"
    );
    let n_out = n / 2;
    let n_in = n - n_out;
    let t = |i: usize, m: usize| {
        if m > 1 {
            std::f64::consts::PI * i as f64 / (m - 1) as f64
        } else {
            0.0
        }
    };
    let mut pts: Vec<([f64; 2], usize)> = Vec::with_capacity(n);
    for i in 0..n_out {
        let a = t(i, n_out);
        pts.push(([a.cos(), a.sin()], 0));
    }
    for i in 0..n_in {
        let a = t(i, n_in);
        pts.push(([1.0 - a.cos(), 0.5 - a.sin()], 1));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    pts.shuffle(&mut rng);
    let normal = Normal::new(0.0, noise).expect("noise is finite and >= 0");
    let mut x = Array2::zeros((n, 2));
    let mut y = Vec::with_capacity(n);
    for (i, (p, l)) in pts.into_iter().enumerate() {
        x[[i, 0]] = p[0] + normal.sample(&mut rng);
        x[[i, 1]] = p[1] + normal.sample(&mut rng);
        y.push(l);
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moons_without_noise_lie_on_their_circles() {
        let (x, y) = make_moons(101, 0.0, 7);
        assert_eq!(y.iter().filter(|&&l| l == 0).count(), 50);
        for (r, &l) in x.rows().into_iter().zip(&y) {
            let (cx, cy) = if l == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
            let rad = ((r[0] - cx).powi(2) + (r[1] - cy).powi(2)).sqrt();
            assert!((rad - 1.0).abs() < 1e-12);
        }
        assert_eq!(make_moons(101, 0.1, 7), make_moons(101, 0.1, 7));
    }
}
