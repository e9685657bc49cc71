"""``python -m adapter_placement.data``: prepare a paper-scale dataset, or list the tasks."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import TASKS, TaskRegistry, prepare_tfds_dataset


def main(argv: Sequence[str] | None = None, registry: TaskRegistry = TASKS) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.data",
                                     description="Prepare and inspect the transfer tasks.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="download and prepare a paper-scale dataset (tfds)")
    prepare.add_argument("name", help=f"task ({', '.join(sorted(registry.tfds))}) or tfds dataset name")
    prepare.add_argument("--data-dir", default=None,
                         help="tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    commands.add_parser("list", help="list the task names")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in sorted(registry.embedded):
            spec = registry.embedded[name]
            print(f"{name:18s} embedded  {spec.modality:6s} {spec.num_classes:5d} classes  "
                  f"(stands in for {spec.stands_in_for})")
        for name in sorted(registry.tfds):
            spec = registry.tfds[name]
            print(f"{name:18s} tfds      {spec.modality:6s} {spec.num_classes:5d} classes  ({spec.tfds_name})")
        return 0
    print(prepare_tfds_dataset(args.name, args.data_dir, registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
