"""`python -m serving --model_base_path=... --rest_api_port=8501`: tensorflow_model_server's CLI."""
import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import sys

from serving import flags, server, tensorflow_runtime


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A bad command line, --help or --version answer at once, before TensorFlow loads;
    # anything else imports it here, once, without its CPU-machine start-up noise.
    options = flags.parse_or_exit(argv)
    if not options.version:
        tensorflow_runtime.import_tensorflow()
    return server.main(argv)


if __name__ == "__main__":
    sys.exit(main())
