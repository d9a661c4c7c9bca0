# scikit-learn's SVC on the inputs the Rust benchmark sends on stdin (JSON); prints one
# JSON line per row: accuracy, fit and predict CPU-seconds (process time, all threads)
# and wall seconds.
import gzip, json, sys, time
import numpy as np
import sklearn
from sklearn.svm import SVC


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(row):
    if "mnist" in row:
        m = row["mnist"]
        xtr = idx(m["train_images"])[: m["n_train"]].reshape(m["n_train"], -1) / 255.0
        ytr = idx(m["train_labels"])[: m["n_train"]]
        xte = idx(m["test_images"])[: m["n_test"]].reshape(m["n_test"], -1) / 255.0
        yte = idx(m["test_labels"])[: m["n_test"]]
        return xtr, ytr, xte, yte
    return (np.array(row["x_train"]), np.array(row["y_train"]),
            np.array(row["x_test"]), np.array(row["y_test"]))


req = json.load(sys.stdin)
print(json.dumps({"version": sklearn.__version__}), flush=True)
for row in req["rows"]:
    xtr, ytr, xte, yte = load(row)
    clf = SVC(C=row["c"], kernel="rbf", gamma="scale")
    c0, w0 = time.process_time(), time.perf_counter()
    clf.fit(xtr, ytr)
    c1, w1 = time.process_time(), time.perf_counter()
    pred = clf.predict(xte)
    c2, w2 = time.process_time(), time.perf_counter()
    print(json.dumps({
        "accuracy": float((pred == yte).mean()),
        "fit_cpu": c1 - c0, "fit_wall": w1 - w0,
        "predict_cpu": c2 - c1, "predict_wall": w2 - w1,
    }), flush=True)
