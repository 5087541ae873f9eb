"""`python -m serving --model_base_path=... --rest_api_port=8501`: tensorflow_model_server's CLI."""
import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import sys

from serving.server import main

if __name__ == "__main__":
    sys.exit(main())
