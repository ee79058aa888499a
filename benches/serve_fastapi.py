"""The baseline for the serving benchmark: the MNIST MLP served by FastAPI + uvicorn + PyTorch,
answering the same Open Inference Protocol JSON request as TensorBrain's `serve-mlp`, with the
same weights (a TensorBrain checkpoint is a PyTorch state dict in safetensors).

    pip install torch fastapi uvicorn safetensors
    python3 benches/serve_fastapi.py --weights runs/mlp-mnist/model.safetensors --port 8100

Written the way such a service usually is: pydantic models for the request and response, a
plain `def` endpoint (FastAPI runs it on its thread pool), `torch.inference_mode()`.
"""

import argparse
from typing import Any, List, Optional

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from safetensors.torch import load_file, save_file


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 256)
        self.fc2 = torch.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class RequestInput(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    data: List[float]
    parameters: Optional[dict] = None


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: List[RequestInput]
    outputs: Optional[List[Any]] = None
    parameters: Optional[dict] = None


class ResponseOutput(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    data: List[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str = "1"
    id: Optional[str] = None
    outputs: List[ResponseOutput]


def build_app(weights: str) -> FastAPI:
    model = Mlp()
    model.load_state_dict(load_file(weights))
    model.eval()
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready():
        return {}

    @app.post("/v2/models/mlp/infer", response_model=InferResponse)
    def infer(req: InferRequest):
        if len(req.inputs) != 1 or req.inputs[0].name != "x" or req.inputs[0].datatype != "FP32":
            raise HTTPException(status_code=400, detail="expected one FP32 input `x`")
        inp = req.inputs[0]
        x = torch.tensor(inp.data, dtype=torch.float32).reshape(inp.shape)
        if list(x.shape[1:]) != [1, 28, 28]:
            raise HTTPException(status_code=400, detail="x must be [-1, 1, 28, 28]")
        with torch.inference_mode():
            y = model(x)
        return InferResponse(
            model_name="mlp",
            id=req.id,
            outputs=[ResponseOutput(name="output", shape=list(y.shape), datatype="FP32", data=y.flatten().tolist())],
        )

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--save-init-weights", action="store_true", help="write PyTorch-initialised weights (seed 0) to --weights and exit")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--torch-threads", type=int, default=1)
    args = p.parse_args()
    if args.save_init_weights:
        torch.manual_seed(0)
        save_file({k: v.contiguous() for k, v in Mlp().state_dict().items()}, args.weights)
        return
    torch.set_num_threads(args.torch_threads)
    uvicorn.run(build_app(args.weights), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
