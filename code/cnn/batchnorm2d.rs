//! Batch normalisation of convolutional feature maps.
//!
//! A convolution applies the same filter at every position, so its output channel $c$ is
//! one feature seen $N H W$ times per batch. Batch norm for images therefore normalises
//! each channel with the mean and variance over the batch **and both spatial axes**,
//!
//! $$\mu_c = \frac{1}{NHW}\sum_{n,i,j} x_{n,c,i,j}, \qquad
//! y_{n,c,i,j} = \gamma_c\, \frac{x_{n,c,i,j} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}
//! + \beta_c,$$
//!
//! which is exactly the dense [`BatchNorm`] applied to the $NHW \times C$ matrix whose
//! rows are the pixels: so [`BatchNorm2d`] reuses its forward and backward (and their
//! gradient checks) after moving the channel axis last.

use ndarray::{ArrayD, Ix4};

use crate::nn::batchnorm::BatchNorm;
use crate::nn::{Layer, Mode, Module, Param};

/// Batch norm over the channels of NCHW feature maps, with per-channel $\gamma$, $\beta$
/// and running statistics.
///
/// # Shapes
/// - input and output: `(n, c, h, w)`;
/// - parameters `gamma`, `beta`: `(c,)`.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// The dense batch norm over `c` features that does the work.
    pub inner: BatchNorm,
    in_dim: Option<(usize, usize, usize, usize)>,
}

impl BatchNorm2d {
    /// Batch norm over `c` channels, $\gamma = 1$, $\beta = 0$, momentum 0.1,
    /// $\epsilon = 10^{-5}$.
    pub fn new(c: usize) -> Self {
        BatchNorm2d {
            inner: BatchNorm::new(c),
            in_dim: None,
        }
    }
}

impl Module for BatchNorm2d {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.inner.visit_params(prefix, f);
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        self.inner.visit_buffers(prefix, f);
    }
}

// ANCHOR: batchnorm2d
impl Layer for BatchNorm2d {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let c = self.inner.running_mean.len();
        let x4 = super::as_nchw(x, Some(c), "BatchNorm2d::forward");
        let (n, _, h, w) = x4.dim();
        self.in_dim = Some((n, c, h, w));
        // (n, c, h, w) -> (n, h, w, c) -> (n h w, c): one row per pixel
        let rows = x4
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n * h * w, c))
            .expect("standard layout");
        let y = self.inner.forward(&rows.into_dyn(), mode);
        to_nchw(y, (n, c, h, w))
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (n, c, h, w) = self
            .in_dim
            .expect("BatchNorm2d::backward called before forward");
        let dy4 = match dy.view().into_dimensionality::<Ix4>() {
            Ok(v) if v.dim() == (n, c, h, w) => v,
            _ => panic!(
                "BatchNorm2d::backward: dy {:?} vs output {:?}",
                dy.shape(),
                (n, c, h, w)
            ),
        };
        let rows = dy4
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n * h * w, c))
            .expect("standard layout");
        let dx = self.inner.backward(&rows.into_dyn());
        to_nchw(dx, (n, c, h, w))
    }
}
// ANCHOR_END: batchnorm2d

/// `(n h w, c)` rows back to `(n, c, h, w)`.
fn to_nchw(rows: ArrayD<f32>, (n, c, h, w): (usize, usize, usize, usize)) -> ArrayD<f32> {
    rows.into_shape_with_order((n, h, w, c))
        .expect("n h w c values")
        .permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .into_owned()
        .into_dyn()
}
