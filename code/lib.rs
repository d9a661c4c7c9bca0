//! # dlbook: Deep Learning from Scratch, in Rust
//!
//! The library behind the book. Modules are named by topic, never by chapter number, so
//! moving a chapter never breaks an API. Chapters, tests and notebooks carry the numbers.
//!
//! | week | chapter | modules |
//! |---|---|---|
//! | 1 | Mathematical foundations | [`linalg`], [`info`], [`bayes`] |
//! | 2 | Neural-network basics | [`autograd`], [`nn`] |
//! | 3 | Optimization and regularization | [`optim`], [`nn`] (dropout, batch and layer norm, penalties), [`augment`] |
//! | 4 | CNN fundamentals | [`cnn`] |
//! | 5 | CNN architectures and the MNIST classifier | [`models`], [`cnn`]; making it fast: [`bench`](mod@bench), [`gemm`] |
//! | 6 | Transfer learning | [`transfer`], [`models`] (EfficientNet-Lite0, MBConv, `.pth` reading), [`cnn`] (depthwise convolution, padding) |
//! | 7 | Object detection | [`detect`] |
//! | 8 | Recurrent networks | [`rnn`] (RNN, LSTM, GRU, BPTT, the adding problem), [`nn::Embedding`] |
//! | 9 | Sequence applications | [`seq`] (forecasting: series, scaling, windows, metrics, baselines; recurrent forecasters; sequence classification; character-level text generation) |
//! | 10 | Attention | [`attn`] (masked softmax, scaled dot-product and multi-head attention, masks, sinusoidal, learned and rotary positions) |
//! | 11 | Transformers | [`transformer`] (encoder and decoder blocks, pre-LN and post-LN, an encoder-decoder Transformer with greedy and beam decoding, BERT's encoder from scratch), [`gpt`] (a decoder-only language model with a hand-written backward, its KV cache and its candle twin), [`models::bert`] (BERT's configuration, WordPiece tokenization, all-MiniLM-L6-v2 with candle-transformers, sentence embeddings) |
//! | 12 | Statistical machine learning | [`cluster`] (k-means, DBSCAN on a k-d tree, agglomerative clustering, clustering metrics), [`svm`] (SMO, kernels, one-vs-one, grid search), [`ensemble`] (CART, forests, AdaBoost, histogram gradient boosting, stacking), [`tsa`] (ADF and KPSS, ACF and PACF, seasonal ARIMA by exact likelihood, order search), [`pgm`] (hidden Markov models, Markov chains, Bayesian networks), [`data::folds`] (stratified splits and folds, standardisation) |
//! | 13 | Production ML | [`mlops`] (tracking, the model registry, sweeps, drift detection), [`serve`] (the model server), [`deploy`] (the container's health probe) (being written) |
//!
//! Shared infrastructure: [`data`] (checksummed datasets and their readers), [`train`]
//! (the one training loop: any layer stack, loss and optimizer on a dataset, with
//! callbacks, frozen and scaled parameter groups, gradient clipping, early stopping and
//! checkpoints that resume bit for bit), [`report`]
//! (experiment results as JSON, rendered to Markdown tables and SVG figures), [`book`]
//! (the book's own structure: includes, anchors, claims), [`metrics`] (per-example losses
//! and predictions, the confusion matrix), [`gemm`] (the `f32` matrix
//! product the fast layers use, through OpenBLAS), [`experiments`] (one file per
//! experiment, each with a quick and a full configuration).

#![deny(missing_docs)]

pub mod attn;
pub mod augment;
pub mod autograd;
pub mod bayes;
pub mod bench;
pub mod book;
pub mod cluster;
pub mod cnn;
pub mod data;
pub mod deploy;
pub mod detect;
pub mod ensemble;
pub mod experiments;
pub mod gemm;
pub mod gpt;
pub mod info;
pub mod linalg;
pub mod metrics;
pub mod mlops;
pub mod models;
pub mod nn;
pub mod optim;
pub mod pgm;
pub mod progress;
pub mod report;
pub mod rnn;
pub mod seq;
pub mod serve;
pub mod svm;
pub mod train;
pub mod transfer;
pub mod transformer;
pub mod tsa;
