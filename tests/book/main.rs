//! The book's tests: one binary, one module per chapter, plus the integrity checks.
//! Run one chapter with `cargo test --test book ch01`.

mod ch01_bayes;
mod ch01_info;
mod ch01_linalg;
mod ch02_autograd;
mod ch02_layers;
mod ch02_perceptron;
mod ch02_training;
mod ch03_optim;
mod ch03_regularization;
mod ch04_cnn;
mod ch04_features;
mod ch04_receptive;
mod ch05_architectures;
mod ch05_bench;
mod ch05_checkpoint;
mod ch05_classifier;
mod ch05_models;
mod ch05_twin;
mod ch06_backbone;
mod ch06_folder;
mod ch06_layers;
mod ch06_transfer;
mod ch07_ap;
mod ch07_boxes;
mod ch07_detector;
mod ch08_memory;
mod ch08_rnn;
mod ch09_classify;
mod ch09_forecast;
mod ch09_text;
mod data_dataset;
mod data_io;
mod fresh;
mod integrity;
mod train_loop;
