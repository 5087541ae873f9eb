"""MLServer with a custom MLModel runtime around the SavedModel: the V2 (Open Inference)
protocol over REST and gRPC, as MLServer's custom-runtime docs show it.

`python mlserver_runtime.py settings DIR ...` writes the settings.json and
model-settings.json that `mlserver start DIR` reads; `python mlserver_runtime.py
grpc-body ...` writes one serialized ModelInferRequest for a gRPC load generator.
"""
import argparse
import json
import os
import sys

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

# V2 datatype of each numpy kind the taxi signatures take.
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32",
                "object": "BYTES"}


class SavedModelSignature(MLModel):
    async def load(self) -> bool:
        from tensorflow_signature import SignatureRunner

        extra = self.settings.parameters.extra or {}
        self.runner = SignatureRunner(self.settings.parameters.uri, extra["signature"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        columns = {}
        for request_input in payload.inputs:
            if request_input.datatype == "BYTES":
                columns[request_input.name] = StringCodec.decode_input(request_input)
            else:
                columns[request_input.name] = NumpyCodec.decode_input(request_input).reshape(-1)
        outputs = self.runner.run(columns)
        # NumpyCodec keeps each output's shape (and sends bytes arrays as BYTES).
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output(name, array) for name, array in sorted(outputs.items())])


def v2_inputs(rows: list, dtypes: dict) -> list:
    """Rows of {name: value} -> V2 inputs (one column each)."""
    return [{"name": name, "shape": [len(rows)], "datatype": V2_DATATYPES[dtype],
             "data": [row[name] for row in rows]} for name, dtype in sorted(dtypes.items())]


def write_settings(directory, model_name, version_dir, signature, http_port, grpc_port,
                   metrics_port):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "settings.json"), "w") as f:
        json.dump({"http_port": http_port, "grpc_port": grpc_port,
                   "metrics_port": metrics_port, "debug": False}, f)
    with open(os.path.join(directory, "model-settings.json"), "w") as f:
        json.dump({"name": model_name, "implementation": "mlserver_runtime.SavedModelSignature",
                   "parameters": {"uri": version_dir, "extra": {"signature": signature}}}, f)


def write_grpc_body(path, model_name, rows, dtypes):
    """One length-prefixed gRPC message (as on the wire) of a V2 ModelInferRequest."""
    from mlserver.grpc import dataplane_pb2

    request = dataplane_pb2.ModelInferRequest(model_name=model_name)
    for spec in v2_inputs(rows, dtypes):
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"],
                                    shape=spec["shape"])
        if spec["datatype"] == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in spec["data"])
        elif spec["datatype"] in ("INT64", "INT32"):
            getattr(tensor.contents, spec["datatype"].lower() + "_contents").extend(spec["data"])
        else:
            getattr(tensor.contents, spec["datatype"].lower() + "_contents").extend(
                np.asarray(spec["data"], dtype=np.float64).tolist())
    message = request.SerializeToString()
    with open(path, "wb") as f:
        f.write(b"\0" + len(message).to_bytes(4, "big") + message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["settings", "grpc-body"])
    parser.add_argument("--spec", required=True, help="JSON file with the arguments")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    if args.command == "settings":
        write_settings(**spec)
    else:
        write_grpc_body(**spec)


if __name__ == "__main__":
    sys.exit(main())
