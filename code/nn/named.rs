//! A stack of layers with names, and a reshape layer.
//!
//! [`Named`] is [`Sequential`](super::Sequential) with a name per layer, so parameters get
//! names a reader (and a checkpoint file) can follow: `conv1.weight`, `bn1.gamma`,
//! `fc2.bias`, the names PyTorch gives the attributes of a module.

use ndarray::{ArrayD, IxDyn};

use super::{join, Layer, Mode, Module, Param};

/// Layers applied one after the other, each under its own name; parameters are named
/// `{layer name}.{parameter name}`.
///
/// # Shapes
/// - input: what the first layer takes; output: what the last layer returns.
#[derive(Default)]
pub struct Named {
    /// `(name, layer)`, in order.
    pub layers: Vec<(String, Box<dyn Layer>)>,
}

impl Named {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `layer` under `name`. Panics if the name is already taken (two layers with
    /// one name would write the same checkpoint entry).
    pub fn push(&mut self, name: &str, layer: impl Layer + 'static) {
        assert!(
            self.layers.iter().all(|(n, _)| n != name),
            "Named::push: a layer called {name:?} is already in the stack"
        );
        self.layers.push((name.to_string(), Box::new(layer)));
    }

    /// The layer names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.layers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The index of the first layer with parameters: the layer
    /// [`Layer::backward_params`] tells that nobody needs its `dx`.
    pub fn first_with_params(&mut self) -> Option<usize> {
        self.layers
            .iter_mut()
            .position(|(_, layer)| layer.n_params() > 0)
    }

    /// The layer called `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer>> {
        self.layers
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
    }

    /// Runs the layers in order and returns every intermediate output, by layer name
    /// (the feature maps of a CNN).
    pub fn forward_all(
        &mut self,
        x: &ArrayD<f32>,
        mode: Mode,
    ) -> Vec<(String, ArrayD<f32>)> {
        let mut out = Vec::with_capacity(self.layers.len());
        let mut h = x.clone();
        for (name, layer) in &mut self.layers {
            h = layer.forward(&h, mode);
            out.push((name.clone(), h.clone()));
        }
        out
    }

    /// The output of layer `name` on `x`, in evaluation mode: the layers after it are
    /// not run. Panics on a name the model does not have.
    pub fn layer_output(&mut self, x: &ArrayD<f32>, name: &str) -> ArrayD<f32> {
        let last = self
            .layers
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("layer_output: the model has no layer {name:?}"));
        let mut h = x.clone();
        for (_, layer) in &mut self.layers[..=last] {
            h = layer.forward(&h, Mode::Eval);
        }
        h
    }
}

impl Module for Named {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (name, layer) in &mut self.layers {
            layer.visit_params(&join(prefix, name), f);
        }
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        for (name, layer) in &mut self.layers {
            layer.visit_buffers(&join(prefix, name), f);
        }
    }

    fn visit_rngs(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &mut rand_chacha::ChaCha8Rng),
    ) {
        for (name, layer) in &mut self.layers {
            layer.visit_rngs(&join(prefix, name), f);
        }
    }

    fn reset_state(&mut self) {
        for (_, layer) in &mut self.layers {
            layer.reset_state();
        }
    }
}

// ANCHOR: named_layer
impl Layer for Named {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.forward_owned(x.clone(), mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.backward_owned(dy.clone())
    }

    // Each activation is handed to the next layer, which may reuse its buffer.
    fn forward_owned(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let mut h = x;
        for (_, layer) in &mut self.layers {
            h = layer.forward_owned(h, mode);
        }
        h
    }

    fn backward_owned(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let mut d = dy;
        for (_, layer) in self.layers.iter_mut().rev() {
            d = layer.backward_owned(d);
        }
        d
    }

    // Layers before the first one with parameters get no gradient at all, and that
    // first layer is told that nobody needs its dx.
    fn backward_params(&mut self, dy: ArrayD<f32>) {
        let Some(first) = self.first_with_params() else {
            return;
        };
        let mut d = dy;
        for (_, layer) in self.layers[first + 1..].iter_mut().rev() {
            d = layer.backward_owned(d);
        }
        self.layers[first].1.backward_params(d);
    }
}
// ANCHOR_END: named_layer

/// Reshapes each example: `(n, a, b, ...)` to `(n, shape...)`, keeping the batch axis.
/// The seed CNN starts with one, so it takes MNIST rows `(n, 784)` as well as images
/// `(n, 1, 28, 28)`.
///
/// # Shapes
/// - input: `(n, ...)` with `product(shape)` values per example
/// - output: `(n, shape...)`
#[derive(Clone, Debug)]
pub struct Reshape {
    /// The shape of one example at the output.
    pub shape: Vec<usize>,
    in_shape: Option<Vec<usize>>,
}

impl Reshape {
    /// Reshapes every example to `shape`.
    pub fn new(shape: &[usize]) -> Self {
        Reshape {
            shape: shape.to_vec(),
            in_shape: None,
        }
    }
}

impl Module for Reshape {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for Reshape {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let per_example: usize = self.shape.iter().product();
        let n = x.shape().first().copied().unwrap_or(0);
        assert!(
            x.ndim() >= 1 && x.len() == n * per_example,
            "Reshape::forward: cannot reshape {:?} to (n, {:?})",
            x.shape(),
            self.shape
        );
        self.in_shape = Some(x.shape().to_vec());
        let mut to = vec![n];
        to.extend_from_slice(&self.shape);
        x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&to))
            .expect("sizes match")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let shape = self
            .in_shape
            .as_ref()
            .expect("Reshape::backward called before forward");
        assert_eq!(
            dy.len(),
            shape.iter().product::<usize>(),
            "Reshape::backward: dy {:?} vs input {:?}",
            dy.shape(),
            shape
        );
        dy.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(shape))
            .expect("sizes match")
    }
}
