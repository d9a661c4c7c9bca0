//! Whole networks built from the book's layers: the seed MNIST CNN and its variants
//! (week 5) and EfficientNet-Lite0 (week 6), each a [`Named`](crate::nn::Named) stack whose parameters carry the names a
//! checkpoint file uses (`conv1.weight`, `fc2.bias`).

pub mod candle_twin;
pub mod checkpoint;
pub mod count;
pub mod efficientnet;
pub mod mnist_cnn;
pub mod pth;

pub use mnist_cnn::{mnist_cnn, CnnConfig, Downsample};

pub mod candle_blocks;
pub mod candle_efficientnet;
pub mod candle_mbconv;
pub mod lenet;
pub mod mbconv;
pub mod resnet;
pub mod vgg;

pub mod bert;
pub mod bert_finetune;
