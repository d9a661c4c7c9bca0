# hmmlearn's side of `dlbook bench --name hmm_speed`: reads the model, the sequence and
# the number of runs as JSON on stdin, times hmmlearn's CategoricalHMM (scaling
# implementation) on them, and prints CPU and wall seconds of each run as JSON.
import json
import sys
import time

import numpy as np
import hmmlearn
from hmmlearn.hmm import CategoricalHMM

cfg = json.load(sys.stdin)
start = np.array(cfg["start"])
trans = np.array(cfg["trans"])
emit = np.array(cfg["emit"])
x = np.array(cfg["obs"], dtype=np.int64).reshape(-1, 1)
runs = cfg["runs"]


def model(n_iter=1):
    h = CategoricalHMM(
        n_components=len(start),
        n_iter=n_iter,
        init_params="",
        params="ste",
        implementation="scaling",
        tol=0.0,
    )
    h.n_features = emit.shape[1]
    h.startprob_ = start.copy()
    h.transmat_ = trans.copy()
    h.emissionprob_ = emit.copy()
    return h


def timed(f):
    f()  # warm-up, as on the Rust side
    cpu, wall = [], []
    for _ in range(runs):
        c, w = time.process_time(), time.perf_counter()
        f()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"cpu": cpu, "wall": wall}


h = model()
out = {
    "version": hmmlearn.__version__,
    "forward": timed(lambda: h.score(x)),
    "viterbi": timed(lambda: h.decode(x, algorithm="viterbi")),
    "posteriors": timed(lambda: h.predict_proba(x)),
    "baum_welch": timed(lambda: model().fit(x)),
}
print(json.dumps(out))
