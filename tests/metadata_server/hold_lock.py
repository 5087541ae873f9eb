"""`python -m tests.metadata_server.hold_lock STORE [LOCK]`: holds the pipeline's
run lock (or LOCK) of the metadata store STORE until killed, as a pipeline run
on another machine would; prints "held" once it has it."""
import dataclasses
import sys
import time

from pipeline import config as pipeline_config
from pipeline import run_lock


def main(store: str, name: str = run_lock.RUN_LOCK) -> int:
    cfg = dataclasses.replace(pipeline_config.PipelineConfig(), metadata_store=store)
    try:
        with run_lock.hold_for_store(cfg, name, "test holder"):
            print("held", flush=True)
            while True:
                time.sleep(60)
    except run_lock.LockHeld as busy:
        print(f"busy: {busy}", flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
