//! Clustering: k-means, DBSCAN and agglomerative clustering, the metrics that judge
//! them, and a two-moons generator.
//!
//! Every algorithm follows the same shape: an unfitted struct of hyper-parameters whose
//! `fit(&x)` returns a `Result` of the fitted answer (bad hyper-parameters, such as
//! `k = 0` or `eps <= 0`, are errors, not panics). Data are `(N, d)` matrices of `f64`.

pub mod agglomerative;
pub mod dbscan;
pub mod kmeans;
pub mod metrics;
pub mod moons;

pub use agglomerative::{Agglomerative, Dendrogram, Linkage};
pub use dbscan::{Dbscan, FittedDbscan, KdTree};
pub use kmeans::{FittedKMeans, KMeans, KMeansInit};
pub use metrics::{
    adjusted_rand_index, normalized_mutual_info, silhouette_samples, silhouette_score,
};
