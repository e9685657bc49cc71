"""What `mlflow ui` shows of the audit trail (issue 13): run names by cell and seed, experiments
tagged as model training, one parent run per cell with its seeds as children, and each run's
data as MLflow dataset inputs. Everything is read back from a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from adapter_placement.data.tasks import InMemoryTask, tensors_digest
from adapter_placement.tracking import (
    CELL_PARENT_TAG,
    RUN_KEY_TAG,
    SUPERSEDED_TAG,
    find_runs,
    task_datasets,
    tracked_run,
)

KIND_TAG = "mlflow.experimentKind"  # what MLflow 3's UI reads (mlflow/server/js ExperimentKind)
PARENT_TAG = "mlflow.parentRunId"


def seed_tags(cell: str, seed: int) -> dict:
    return {"experiment": cell.split("/")[0], "cell": cell, "seed": seed}


def all_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def parents(uri: str, experiment: str) -> dict[str, object]:
    """The parent runs of an experiment by cell."""
    found = [run for run in all_runs(uri, experiment) if CELL_PARENT_TAG in run.data.tags]
    assert len({run.data.tags["cell"] for run in found}) == len(found), "two parents of one cell"
    return {run.data.tags["cell"]: run for run in found}


def track(uri: str, experiment: str, run_key: str, tags: dict, **kwargs) -> str:
    with tracked_run(experiment, run_key, {"seed": tags.get("seed", 0)}, tags, uri=uri, flush_secs=0,
                     **kwargs) as run:
        run.log_metrics({"train_loss": 0.5}, step=0)
    return run.run_id


# --- names ----------------------------------------------------------------------------------


def test_runs_are_named_by_cell_and_seed_not_by_result_path(store_uri: str, experiment: str) -> None:
    cell = "table1/inat18/adapters-r128-gelu/parallel_all"
    seeded = track(store_uri, experiment, "results/runs/table1/inat18/x/parallel_all/seed0", seed_tags(cell, 0))
    unseeded = track(store_uri, experiment, "results/scores/inat18/vit_b16.json",
                     {"experiment": "scores", "cell": "scores/inat18/vit_b16"})
    untagged = track(store_uri, experiment, "some/result.json", {})
    client = MlflowClient(store_uri)
    assert client.get_run(seeded).info.run_name == "inat18 · adapters-r128-gelu · parallel_all · seed 0"
    assert client.get_run(unseeded).info.run_name == "inat18 · vit_b16"
    assert client.get_run(untagged).info.run_name == "some/result.json"  # nothing better to go by
    assert client.get_run(seeded).data.tags[RUN_KEY_TAG] == "results/runs/table1/inat18/x/parallel_all/seed0"


# --- experiment kind ------------------------------------------------------------------------


def test_new_and_old_experiments_open_as_model_training(store_uri: str, experiment: str) -> None:
    client = MlflowClient(store_uri)
    track(store_uri, experiment, "key", {})
    assert client.get_experiment_by_name(experiment).tags[KIND_TAG] == "custom_model_development"

    old = client.create_experiment(f"{experiment}-made-before")  # a store of an older version
    assert KIND_TAG not in client.get_experiment(old).tags
    track(store_uri, f"{experiment}-made-before", "key", {})
    assert client.get_experiment(old).tags[KIND_TAG] == "custom_model_development"

    chosen = client.create_experiment(f"{experiment}-chosen", tags={KIND_TAG: "genai_development"})
    track(store_uri, f"{experiment}-chosen", "key", {})
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"  # a user's choice stays


# --- parents and children -------------------------------------------------------------------


def test_seeds_of_a_cell_share_one_parent_and_cells_get_their_own(store_uri: str, experiment: str) -> None:
    cell_a, cell_b = "table1/svhn/adapters-r8-gelu/parallel_all", "table1/svhn/adapters-r8-gelu/sequential_all"
    a0 = track(store_uri, experiment, "a/seed0", seed_tags(cell_a, 0))
    a1 = track(store_uri, experiment, "a/seed1", seed_tags(cell_a, 1))
    b0 = track(store_uri, experiment, "b/seed0", seed_tags(cell_b, 0))

    by_cell = parents(store_uri, experiment)
    assert set(by_cell) == {cell_a, cell_b}
    client = MlflowClient(store_uri)
    parent_of = {run_id: client.get_run(run_id).data.tags[PARENT_TAG] for run_id in (a0, a1, b0)}
    assert parent_of == {a0: by_cell[cell_a].info.run_id, a1: by_cell[cell_a].info.run_id,
                         b0: by_cell[cell_b].info.run_id}
    parent = by_cell[cell_a]
    assert parent.info.run_name == "svhn · adapters-r8-gelu · parallel_all"
    assert parent.info.status == "FINISHED"  # not a job that looks alive forever
    assert RUN_KEY_TAG not in parent.data.tags and PARENT_TAG not in parent.data.tags
    # a parent is a container, never one of the cell's results
    assert [run.info.run_id for run in find_runs(experiment, uri=store_uri, cell=cell_a)] == [a0, a1]
    assert {run.info.run_id for run in find_runs(experiment, uri=store_uri)} == {a0, a1, b0}


def test_a_run_without_a_seed_has_no_parent(store_uri: str, experiment: str) -> None:
    run_id = track(store_uri, experiment, "scores.json", {"cell": "scores/svhn/vit"})
    assert PARENT_TAG not in MlflowClient(store_uri).get_run(run_id).data.tags
    assert parents(store_uri, experiment) == {}


def test_a_retried_run_joins_the_parent_it_had(store_uri: str, experiment: str) -> None:
    cell = "fig3/svhn/adapters-r8-gelu/grid_0_3"
    first = track(store_uri, experiment, "seed0", seed_tags(cell, 0))
    retry = track(store_uri, experiment, "seed0", seed_tags(cell, 0))

    (parent,) = parents(store_uri, experiment).values()
    client = MlflowClient(store_uri)
    assert client.get_run(retry).data.tags[PARENT_TAG] == parent.info.run_id
    assert client.get_run(first).data.tags[SUPERSEDED_TAG] == retry  # superseding works as before
    assert client.get_run(first).info.status == "KILLED"
    assert len(all_runs(store_uri, experiment)) == 3  # the parent, the superseded run, the retry


WORKER = """
import sys, time
from pathlib import Path
from adapter_placement.tracking import tracked_run
uri, experiment, cell, seed, go = sys.argv[1:]
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.005)
with tracked_run(experiment, f"{cell}/seed{seed}", {"seed": seed}, {"cell": cell, "seed": seed}, uri=uri):
    pass
"""


@pytest.mark.slow  # four processes import MLflow: about 20 s on 2 free cores, over a minute on a busy machine
@pytest.mark.timeout(600)
def test_concurrent_seeds_of_a_cell_make_one_parent(store_uri: str, experiment: str, tmp_path: Path) -> None:
    """Real processes released at one moment, each the first seed of the cell it sees."""
    cell, seeds, go = "table1/svhn/adapters-r8-gelu/random_24_017", range(4), tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, store_uri, experiment, cell, str(seed), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for seed in seeds]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    go.touch()
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()

    (parent,) = parents(store_uri, experiment).values()
    children = find_runs(experiment, uri=store_uri, cell=cell)
    assert sorted(run.data.tags["seed"] for run in children) == [str(seed) for seed in seeds]
    assert {run.data.tags[PARENT_TAG] for run in children} == {parent.info.run_id}


# --- dataset inputs -------------------------------------------------------------------------


def small_task(shift: int = 0) -> tuple[InMemoryTask, dict]:
    """An in-memory task with splits of 6, 2 and 3 examples; ``shift`` changes one pixel."""
    generator = torch.Generator().manual_seed(0)
    splits = {}
    for split, size in {"train": 6, "val": 2, "test": 3}.items():
        images = torch.randint(0, 256, (size, 3, 4, 4), generator=generator, dtype=torch.uint8)
        splits[split] = (images, torch.arange(size) % 2)
    splits["train"][0][0, 0, 0, 0] += shift
    return InMemoryTask("digits_toy", "vision", 2, splits), splits


def logged_inputs(uri: str, run_id: str) -> dict[str, object]:
    """The run's dataset inputs by their context (the split)."""
    inputs = MlflowClient(uri).get_run(run_id).inputs.dataset_inputs
    contexts = [{tag.key: tag.value for tag in i.tags}["mlflow.data.context"] for i in inputs]
    return {context: i.dataset for context, i in zip(contexts, inputs)}


def test_a_run_logs_each_split_it_reads_with_name_digest_and_sizes(store_uri: str, experiment: str) -> None:
    task, splits = small_task()
    run_id = track(store_uri, experiment, "seed0", seed_tags("table1/toy/lp/none", 0),
                   datasets=task_datasets(task, ["train+val", "test", "test"]))

    logged = logged_inputs(store_uri, run_id)
    assert set(logged) == {"train+val", "test"}
    train_val = (torch.cat([splits["train"][0], splits["val"][0]]), torch.cat([splits["train"][1], splits["val"][1]]))
    assert logged["train+val"].name == logged["test"].name == "digits_toy"
    assert logged["train+val"].digest == tensors_digest(*train_val)
    assert logged["test"].digest == tensors_digest(*splits["test"])
    profile = json.loads(logged["train+val"].profile)
    assert profile == {"num_rows": 8, "split_sizes": {"train": 6, "val": 2, "test": 3, "train+val": 8}}
    assert json.loads(logged["test"].source)["tags"]["split"] == "test"


def test_changed_data_is_a_new_dataset_and_the_same_data_is_one(store_uri: str, experiment: str) -> None:
    task, _ = small_task()
    changed, _ = small_task(shift=1)
    first = track(store_uri, experiment, "a", {}, datasets=task_datasets(task, ["train"]))
    again = track(store_uri, experiment, "b", {}, datasets=task_datasets(small_task()[0], ["train"]))
    other = track(store_uri, experiment, "c", {}, datasets=task_datasets(changed, ["train"]))
    digests = {key: logged_inputs(store_uri, run_id)["train"].digest
               for key, run_id in {"first": first, "again": again, "other": other}.items()}
    assert digests["first"] == digests["again"] != digests["other"]


class StreamedTask:
    """A task read as a stream (like data.TfdsTask): reading it whole is not allowed."""

    name = "inat18"
    split_sizes = {"train": 433_000, "val": 4_400, "test": 24_426, "train+val": 437_400}

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.builder = type("Builder", (), {"info": type("Info", (), {"full_name": "i_naturalist2018/1.1.0"})})

    def digest(self, split: str) -> str:
        raise AssertionError("a streamed task must not be read whole for its digest")


def test_a_streamed_task_is_identified_without_reading_it(store_uri: str, experiment: str) -> None:
    datasets = task_datasets(StreamedTask(seed=0), ["train+val", "test"])
    run_id = track(store_uri, experiment, "seed0", {}, datasets=datasets)
    logged = logged_inputs(store_uri, run_id)
    assert json.loads(logged["train+val"].profile)["num_rows"] == 437_400
    assert json.loads(logged["test"].source)["tags"]["tfds"] == "i_naturalist2018/1.1.0"
    assert logged["train+val"].digest != logged["test"].digest
    other_seed = task_datasets(StreamedTask(seed=1), ["train+val"])[0]  # another 1% validation draw
    assert other_seed.digest != logged["train+val"].digest


# --- the training job's wiring --------------------------------------------------------------


def test_a_tracked_training_run_is_a_named_child_with_its_splits(store_uri: str, experiment: str,
                                                                 tmp_path: Path) -> None:
    """train() with tracking on: the name, parent and dataset inputs come from its config."""
    from adapter_placement.data import load_task
    from adapter_placement.vit import DEFAULT_VIT_KWARGS, build_vit, save_pretrained_vit
    from adapter_placement.train import TrainConfig, train

    kwargs = {**DEFAULT_VIT_KWARGS, "embed_dim": 16, "depth": 1, "num_heads": 2}
    torch.manual_seed(0)  # an untrained ViT: this test is about what is tracked, not learnt
    weights = save_pretrained_vit(build_vit(**kwargs), tmp_path / "vit.safetensors", kwargs)
    sizes = {"train": 16, "val": 8, "test": 8}
    cell = "table1/digits_location/adapters-r4-gelu/parallel_all"
    cfg = TrainConfig(dataset="digits_location", model=str(weights), edges=[(0, 1)], rank=4, lr=0.01, steps=2,
                      batch_size=8, train_split="train+val", eval_splits=("test",), progress=False, track=True,
                      tracking_uri=store_uri, experiment=experiment, data_sizes=sizes, tags=seed_tags(cell, 2))
    train(cfg, tmp_path / "run")

    (run,) = find_runs(experiment, uri=store_uri, cell=cell)
    assert run.info.run_name == "digits_location · adapters-r4-gelu · parallel_all · seed 2"
    assert run.data.tags[PARENT_TAG] == parents(store_uri, experiment)[cell].info.run_id
    expected = load_task("digits_location", seed=cfg.data_seed, sizes=sizes)  # loaded anew here
    logged = logged_inputs(store_uri, run.info.run_id)
    assert {split: d.digest for split, d in logged.items()} == {
        split: expected.digest(split) for split in ("train+val", "test")}
    assert json.loads(logged["test"].profile)["split_sizes"] == {**sizes, "train+val": 24}
