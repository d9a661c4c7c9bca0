# statsmodels' side of `dlbook bench --name arima_speed`: reads the two series, the
# number of runs and the largest order of the search as JSON on stdin, times
# statsmodels' ARIMA(...).fit() (exact likelihood by the state-space filter, L-BFGS,
# standard errors from the outer product of gradients) on the same three tasks as the
# Rust side, and prints CPU and wall seconds of each run as JSON, with the
# log-likelihoods it reached.
import json
import sys
import time
import warnings

import numpy as np
import statsmodels
from statsmodels.tsa.arima.model import ARIMA

cfg = json.load(sys.stdin)
log_air = np.log(np.array(cfg["air"], dtype=float))
sun = np.array(cfg["sun"], dtype=float)
runs = cfg["runs"]
top = cfg["max_order"]


def timed(f):
    f()  # warm-up, as on the Rust side
    cpu, wall = [], []
    for _ in range(runs):
        c, w = time.process_time(), time.perf_counter()
        f()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"cpu": cpu, "wall": wall}


def airline():
    return ARIMA(log_air, order=(0, 1, 1), seasonal_order=(0, 1, 1, 12)).fit().llf


def sunspots():
    return ARIMA(sun, order=(2, 1, 2)).fit().llf


def search():
    return [ARIMA(sun, order=(p, 1, q)).fit().llf
            for p in range(top + 1) for q in range(top + 1)]


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = {
        "version": statsmodels.__version__,
        "airline": timed(airline),
        "sunspots": timed(sunspots),
        "search": timed(search),
        "llf": [airline(), sunspots(), max(search())],
    }
print(json.dumps(out))
