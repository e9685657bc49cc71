"""A training-like process for tests/test_tracking.py, run as a real subprocess.

usage: python _tracking_worker.py EXPERIMENT RUN_KEY MODE GO_FILE

Prints "ready" once its imports are done, then waits until GO_FILE exists, so that the test
can release many workers at the same moment. The store comes from the working directory or
MLFLOW_TRACKING_URI, as in the pipeline. MODE "train" logs STEPS metric batches and an
artifact, then finishes; MODE "hang" prints the run id and sleeps until it is killed.
"""

import sys
import time
from pathlib import Path

from adapter_placement.tracking import tracked_run

STEPS = 5


def main(experiment: str, run_key: str, mode: str, go_file: str) -> None:
    print("ready", flush=True)
    while not Path(go_file).exists():
        time.sleep(0.01)
    with tracked_run(experiment, run_key, params={"run_key": run_key}, tags={"cell": experiment}, flush_secs=0) as run:
        if mode == "hang":
            print(run.run_id, flush=True)
            time.sleep(600)
        for step in range(STEPS):
            run.log_metrics({"train_loss": 1.0 / (step + 1), "lr": 1e-3}, step=step)
        run.log_json("placement.json", {"run_key": run_key})


if __name__ == "__main__":
    main(*sys.argv[1:])
