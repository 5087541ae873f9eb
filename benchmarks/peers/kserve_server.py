"""KServe's ModelServer with a custom kserve.Model around the SavedModel: the v1 protocol
(TF Serving's row format, POST /v1/models/<name>:predict), as KServe's docs show it.

    /work/peers/kserve/venv/bin/python benchmarks/peers/kserve_server.py \
        --model_name=taxi_tips --version_dir=... --signature=serving_raw --http_port=8080
"""
import argparse

import kserve

from tensorflow_signature import SignatureRunner, as_json_value


class SavedModelSignature(kserve.Model):
    def __init__(self, name: str, version_dir: str, signature: str):
        super().__init__(name)
        self.version_dir, self.signature = version_dir, signature
        self.runner = None

    def load(self) -> bool:
        self.runner = SignatureRunner(self.version_dir, self.signature)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = payload["instances"]
        columns = {name: [row[name] for row in instances] for name in self.runner.input_specs}
        outputs = self.runner.run(columns)
        names = sorted(outputs)
        return {"predictions": [{name: as_json_value(outputs[name][i]) for name in names}
                                for i in range(len(instances))]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--version_dir", required=True)
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    args = parser.parse_args()
    model = SavedModelSignature(args.model_name, args.version_dir, args.signature)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port,
                       enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
