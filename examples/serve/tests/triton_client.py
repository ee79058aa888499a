"""Drives a running serve-mlp/serve-cnn with NVIDIA's own Python client (`tritonclient[http]`
from PyPI) and writes what it got back as JSON for the Rust test to check.

    python3 triton_client.py HOST:PORT MODEL INPUTS.json RESULTS.json

INPUTS.json holds {"x": [[...784 floats...], ...]}: images, one row each.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def infer(client, model, x, binary):
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("output", binary_data=binary)
    result = client.infer(model, [inp], outputs=[out], request_id=f"req-{'bin' if binary else 'json'}")
    return result


def main():
    url, model, inputs_path, results_path = sys.argv[1:5]
    with open(inputs_path) as f:
        x = np.asarray(json.load(f)["x"], dtype=np.float32).reshape(-1, 1, 28, 28)

    client = httpclient.InferenceServerClient(url=url, concurrency=8)
    results = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server_metadata": client.get_server_metadata(),
        "metadata": client.get_model_metadata(model),
        "config": client.get_model_config(model),
    }

    # The whole batch in one request, as JSON and as binary tensors.
    for mode, binary in (("json", False), ("binary", True)):
        r = infer(client, model, x, binary)
        results[mode] = r.as_numpy("output").tolist()
        response = r.get_response()
        results[mode + "_response"] = {k: v for k, v in response.items() if k != "outputs"}
        results[mode + "_output_meta"] = {k: v for k, v in response["outputs"][0].items() if k != "data"}

    # One image per request, all in flight at once (the client's async API).
    pending = []
    for i in range(x.shape[0]):
        inp = httpclient.InferInput("x", [1, 1, 28, 28], "FP32")
        inp.set_data_from_numpy(x[i : i + 1], binary_data=True)
        pending.append(client.async_infer(model, [inp]))
    results["one_by_one"] = [p.get_result().as_numpy("output")[0].tolist() for p in pending]

    # A wrong shape: the client raises the server's message.
    bad = httpclient.InferInput("x", [1, 784], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 784), dtype=np.float32), binary_data=False)
    try:
        client.infer(model, [bad])
        results["wrong_shape_error"] = None
    except InferenceServerException as e:
        results["wrong_shape_error"] = e.message()

    client.close()
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
