# The reference side of `dlbook bench --name ensemble_speed`: scikit-learn and XGBoost on
# the same rows as the book's ensembles. Run as `python3 -c <this> DATA_DIR THREADS` with
# a JSON task list on stdin: [{"name", "data": "breast_cancer"|"mnist", "n_train",
# "seed", "train": [...], "test": [...]}] (the seed is the random forest's `random_state`). Prints one line per task:
# `row NAME accuracy A cpu_s C wall_s W`, then `versions SKLEARN XGBOOST`.
import gzip, json, os, resource, sys, time

import numpy as np
import sklearn
import xgboost as xgb
from sklearn.ensemble import (AdaBoostClassifier, ExtraTreesClassifier,
                              GradientBoostingClassifier, RandomForestClassifier,
                              StackingClassifier)
from sklearn.linear_model import LogisticRegression

data_dir, threads = sys.argv[1], int(sys.argv[2])
tasks = json.load(sys.stdin)


def cpu():
    # Worker processes (joblib's) count too, once they have been waited for.
    rs = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in rs)


def idx(path):
    with gzip.open(path) as f:
        b = f.read()
    dims = b[3]
    shape = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(n_train):
    d = os.path.join(data_dir, "mnist")
    xt = idx(os.path.join(d, "train-images-idx3-ubyte.gz"))[:n_train].reshape(-1, 784)
    yt = idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))[:n_train]
    xv = idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784)
    yv = idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    return xt, yt, xv, yv


def breast(train, test):
    with open(os.path.join(data_dir, "sklearn", "breast_cancer.csv")) as f:
        next(f)
        a = np.array([list(map(float, l.split(","))) for l in f if l.strip()])
    x, y = a[:, :-1], a[:, -1].astype(int)
    return x[train], y[train], x[test], y[test]


def model(name, seed):
    rf = lambda n: RandomForestClassifier(n_estimators=n, n_jobs=threads, random_state=seed)
    return {
        "random_forest": lambda: rf(100),
        "gradient_boosting": lambda: GradientBoostingClassifier(random_state=0),
        "adaboost": lambda: AdaBoostClassifier(random_state=0),
        "xgboost": lambda: xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.3,
                                             tree_method="hist", n_jobs=threads),
        "stacking": lambda: StackingClassifier(
            [("rf", rf(50)), ("et", ExtraTreesClassifier(50, n_jobs=threads, random_state=0))],
            final_estimator=LogisticRegression(max_iter=1000), cv=5, n_jobs=1),
    }[name]()


for t in tasks:
    if t["data"] == "mnist":
        xt, yt, xv, yv = mnist(t["n_train"])
    else:
        xt, yt, xv, yv = breast(t["train"], t["test"])
    m = model(t["model"], t.get("seed", 0))
    c0, w0 = cpu(), time.perf_counter()
    m.fit(xt, yt)
    acc = float((m.predict(xv) == yv).mean())
    print("row", t["name"], "accuracy", acc, "cpu_s", cpu() - c0, "wall_s",
          time.perf_counter() - w0, flush=True)
print("versions", sklearn.__version__, xgb.__version__)
