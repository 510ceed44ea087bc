"""A stand-in for the app's server in tests that kill it: the registry the server keeps
(ui/session.registry: process executor, the folder's queue), submitting the runs given as JSON and
printing their ids, then supervising until it is killed.

    python registry_host.py FOLDER '[{"epochs": 12, ...}, ...]'
"""

import json
import sys
import time

from vae_core.config import TrainConfig
from vae_core.data import load_dataset
from vae_core.registry import JobRegistry


def main() -> None:
    folder, configs = sys.argv[1], json.loads(sys.argv[2])
    registry = JobRegistry(folder, executor="process")
    registry.warm_up()
    for values in configs:
        config = TrainConfig(**values)
        job = registry.submit(config, load_dataset(config.data, seed=config.seed))
        print(job.run_id, flush=True)
    print("submitted", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
