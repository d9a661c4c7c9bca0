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
//!
//! **Inference and folding.** In evaluation mode the statistics are the running ones,
//! constants, so batch norm is an affine map per channel,
//!
//! $$y_c = a_c\, x_c + d_c, \qquad a_c = \frac{\gamma_c}{\sqrt{\bar\sigma_c^2 +
//! \epsilon}}, \qquad d_c = \beta_c - a_c \bar\mu_c,$$
//!
//! and its gradient is $\partial L/\partial x_c = a_c\, \partial L/\partial y_c$. After a
//! convolution $x_c = b_c + \sum w_{c,\cdot} \ast \bar x$ the two affine maps compose into
//! one convolution with
//!
//! $$w'_{c,\cdot} = a_c\, w_{c,\cdot}, \qquad b'_c = a_c b_c + d_c = \beta_c + (b_c -
//! \bar\mu_c)\,\frac{\gamma_c}{\sqrt{\bar\sigma_c^2 + \epsilon}}:$$
//!
//! [`BatchNorm2d::fold_into`] rewrites the weights, and the network runs one layer
//! instead of two at inference time. (In training the statistics change with every
//! batch, so there is nothing constant to fold.)

use ndarray::{Array1, ArrayD, Axis, Ix4};

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

    /// Batch norm over `c` channels with this $\epsilon$ (EfficientNet uses
    /// $10^{-3}$), otherwise as [`BatchNorm2d::new`].
    pub fn with_eps(c: usize, eps: f32) -> Self {
        let mut bn = Self::new(c);
        bn.inner.eps = eps;
        bn
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.inner.running_mean.len()
    }

    // ANCHOR: bn_affine
    /// The evaluation-mode map as per-channel `(scale, shift)`:
    /// $a_c = \gamma_c / \sqrt{\bar\sigma_c^2 + \epsilon}$, $d_c = \beta_c - a_c \bar\mu_c$,
    /// computed in `f64`.
    pub fn affine(&self) -> (Array1<f64>, Array1<f64>) {
        let c = self.channels();
        let (mut a, mut d) = (Array1::zeros(c), Array1::zeros(c));
        let bn = &self.inner;
        for k in 0..c {
            let var = f64::from(bn.running_var[k]) + f64::from(bn.eps);
            a[k] = f64::from(bn.gamma.value[[k]]) / var.sqrt();
            d[k] = f64::from(bn.beta.value[[k]]) - a[k] * f64::from(bn.running_mean[k]);
        }
        (a, d)
    }
    // ANCHOR_END: bn_affine

    // ANCHOR: fold_into
    /// Folds this batch norm (in evaluation mode) into the convolution before it:
    /// $w'_c = a_c w_c$ for every weight of output channel $c$ (the first axis of
    /// `weight`) and $b'_c = a_c b_c + d_c$, with $(a, d)$ from [`BatchNorm2d::affine`].
    ///
    /// # Shapes
    /// - `weight`: `(c, ...)`, `bias`: `(c,)`, `c` the channels of this batch norm.
    pub fn fold_into(&self, weight: &mut ArrayD<f32>, bias: &mut Array1<f32>) {
        let c = self.channels();
        assert!(
            weight.ndim() >= 1 && weight.shape()[0] == c && bias.len() == c,
            "BatchNorm2d::fold_into: weight {:?} and bias {:?} vs {c} channels",
            weight.shape(),
            bias.shape()
        );
        let (a, d) = self.affine();
        for (k, mut w_c) in weight.axis_iter_mut(Axis(0)).enumerate() {
            w_c.mapv_inplace(|v| (f64::from(v) * a[k]) as f32);
            bias[k] = (f64::from(bias[k]) * a[k] + d[k]) as f32;
        }
    }
    // ANCHOR_END: fold_into

    /// Folds this batch norm into `conv`, the [`Conv2d`](super::Conv2d) before it
    /// ([`BatchNorm2d::fold_into`]): `conv` alone then computes the pair in evaluation
    /// mode.
    pub fn fold_into_conv2d(&self, conv: &mut super::Conv2d) {
        let mut b = conv.b().to_owned();
        self.fold_into(&mut conv.weight.value, &mut b);
        conv.bias.value = b.into_dyn();
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
