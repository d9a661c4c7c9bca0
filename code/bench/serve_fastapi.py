"""The reference of `dlbook bench --name serve_load`: the same CNN, with the same
weights, served the way Python services usually are: FastAPI, a Pydantic model of the
request, PyTorch for the forward pass, under uvicorn (one process).

    python serve_fastapi.py MODEL.safetensors PORT

MODEL is the safetensors file the benchmark trained (tensor names `conv1.weight`, ...,
as PyTorch names them; read here without the safetensors package). Prints `ready` with
the versions once the model is loaded, then serves until killed.
"""
import json
import struct
import sys

import fastapi
import pydantic
import torch
import torch.nn as nn
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, conlist


def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        data = bytearray(raw[8 + n + a : 8 + n + b])
        tensors[name] = torch.frombuffer(data, dtype=torch.float32).reshape(t["shape"])
    return tensors


class Cnn(nn.Module):
    """The seed CNN of chapter 5: conv 3x3 (32) - ReLU - max pool 2 - conv 3x3 (64) -
    ReLU - max pool 2 - flatten - linear 128 - ReLU - (dropout) - linear 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.view(-1, 1, 28, 28))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.softmax(self.fc2(x), dim=1)


class PredictRequest(BaseModel):
    instances: conlist(conlist(float, min_length=784, max_length=784), min_length=1, max_length=256)


model = Cnn()
model.load_state_dict(load(sys.argv[1]))
model.eval()
app = FastAPI()


@app.get("/readyz")
def readyz():
    return {"status": "ready", "model": "mnist_cnn", "version": "fastapi"}


@app.post("/v1/models/{name}/predict")
def predict(name: str, req: PredictRequest):
    with torch.no_grad():
        probs = model(torch.tensor(req.instances, dtype=torch.float32))
    return {
        "model": name,
        "version": "fastapi",
        "predictions": [
            {"class": int(p.argmax()), "probabilities": p.tolist()} for p in probs
        ],
    }


print(
    "ready", "fastapi", fastapi.__version__, "pydantic", pydantic.VERSION,
    "torch", torch.__version__, "uvicorn", uvicorn.__version__, flush=True,
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
