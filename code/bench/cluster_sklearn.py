# The reference side of `dlbook bench --name cluster_speed`: one task on the same
# inputs as ours, read from a raw little-endian f64 file, by scikit-learn (or, for the
# `linkage_*` tasks, scipy's `linkage` cut by `fcluster` into at most k clusters).
# Prints its CPU and wall seconds and writes the labels (one integer per line) for the
# caller to score.
# Arguments: task data_path n d k eps_or_0 threads seed labels_out
import sys
import time

task, path, n, d, k, eps, threads, seed, out = sys.argv[1:10]
n, d, k, threads, seed, eps = int(n), int(d), int(k), int(threads), int(seed), float(eps)

import numpy as np
import sklearn
from threadpoolctl import threadpool_limits
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans

x = np.fromfile(path, dtype="<f8").reshape(n, d)
with threadpool_limits(limits=threads):
    c0, w0 = time.process_time(), time.perf_counter()
    if task.startswith("kmeans"):
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed, algorithm="lloyd").fit(x).labels_
    elif task.startswith("dbscan"):
        labels = DBSCAN(eps=eps, min_samples=5, n_jobs=threads).fit(x).labels_
    elif task.startswith("ward"):
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit(x).labels_
    elif task.startswith("linkage_"):
        z = linkage(x, method=task[len("linkage_"):])
        labels = fcluster(z, k, criterion="maxclust") - 1
    else:
        raise SystemExit(f"unknown task {task}")
    c1, w1 = time.process_time(), time.perf_counter()
np.savetxt(out, labels, fmt="%d")
print("sklearn", sklearn.__version__, "cpu_s", c1 - c0, "wall_s", w1 - w0)
