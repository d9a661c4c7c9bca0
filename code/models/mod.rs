//! Whole networks built from the book's layers: the seed MNIST CNN and its variants
//! (week 5), each a [`Named`](crate::nn::Named) stack whose parameters carry the names a
//! checkpoint file uses (`conv1.weight`, `fc2.bias`).

pub mod candle_twin;
pub mod checkpoint;
pub mod count;
pub mod mnist_cnn;

pub use mnist_cnn::{mnist_cnn, CnnConfig, Downsample};

pub mod candle_blocks;
pub mod candle_mbconv;
pub mod lenet;
pub mod mbconv;
pub mod resnet;
pub mod vgg;
