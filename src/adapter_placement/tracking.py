"""MLflow audit trail of the pipeline's training runs.

Every training run is one MLflow run. The pipeline's result files stay the source of truth;
MLflow records how each was produced (parameters, code version, per-step loss, accuracies,
the placement and the adapter weights) so that a user can filter one table or figure cell in
``mlflow ui`` and see the runs behind it::

    with tracked_run(
        experiment="table1",
        run_key="table1/svhn/random_24_017/seed0",
        params={"method": "random", "rank": 8, "lr": 1e-3, "seed": 0, ...},
        tags={"table": "table1", "cell": "table1/svhn/random_24_017"},
    ) as run:
        for step in range(steps):
            ...
            if step % 10 == 0:
                run.log_metrics({"train_loss": loss, "lr": lr}, step=step)
        run.log_metrics({"val_acc": val_acc, "test_acc": test_acc}, step=steps)
        run.log_json("placement.json", placement)
        run.log_tensors("adapters.safetensors", adapter_state_dict)

    mlflow ui --backend-store-uri sqlite:///results/mlflow.db   # then filter: tags.cell = '...'

What the UI shows. A run is named by its cell and seed (:func:`run_name`: "svhn · random_24_017 ·
seed 0"), not by its result path. The runs of one cell (a ``cell`` tag and a ``seed`` tag) are the
children of one parent run named by the cell (tag ``mlflow.parentRunId``), so the UI nests the
seeds under their cell; a parent is an empty FINISHED run tagged ``cell_parent``, made by the
first run of its cell (see Concurrency) and never a result: :func:`find_runs` leaves it out.
Runs without a seed (scores, pre-training) have no parent. Each experiment carries the tag
``mlflow.experimentKind`` = ``custom_model_development``, which MLflow 3 reads to open it as
model training rather than in its GenAI view. The data a run reads are its MLflow dataset
inputs (:func:`task_datasets`: the task's name, the split's digest, the split sizes), which fill
the UI's Dataset column.

Store. The default is SQLite at ``results/mlflow.db`` (relative to the working directory) with
artifacts in ``results/mlartifacts/<experiment>``. ``MLFLOW_TRACKING_URI`` overrides it, e.g.
``http://host:5000`` for an ``mlflow server`` backed by PostgreSQL/MySQL on a cluster. Do not
put the SQLite file on a network file system (NFS, Lustre, GPFS): SQLite's locking and its WAL
mode are not reliable there, and neither is the ``flock`` used below; run a server instead.

Concurrency. First creation of an SQLite store runs alembic migrations; several processes
doing it at once fail ("duplicate column", "table already exists"). :func:`init_store` creates
it once, under an ``flock`` on ``<db>.lock``, and switches the file to WAL so that readers do not
block writers. Later writers may still meet "database is locked" (see :class:`_RetryingClient`).
Several seeds of one cell may start at once; the parent of the cell is found or created under
the same ``flock``, so there is one. Against a tracking server there is no lock: first seeds
that start at the same moment may each make a parent (each nests under one of them); every
later seed takes the oldest.

Retries. A job killed and retried must leave one finished run per result. Runs carry a
``run_key`` tag (one key per result file). When a run starts, earlier runs with its key that are
still RUNNING (their process died without ending them) are set to KILLED. When a run finishes,
earlier FINISHED runs with its key are set to KILLED, keeping their end time: the pipeline
reruns a job only when its result is missing, so the new run is the new truth. Both kinds get
the tag ``superseded_by`` = the new run's id. Two live processes with the same key at the same
time are not expected (Snakemake runs a job once) and are not guarded against.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

# Private, but the same helper MLflow's own schema check uses to know the newest migration.
from mlflow.store.db.utils import _get_latest_schema_revision

from adapter_placement import __version__

DEFAULT_URI = "sqlite:///results/mlflow.db"
RUN_KEY_TAG = "run_key"
SUPERSEDED_TAG = "superseded_by"
CELL_PARENT_TAG = "cell_parent"  # "true" on the parent run of a cell's seeds
# MLflow 3's UI opens an experiment without this tag in its GenAI view (the value names are the
# ExperimentKind enum of mlflow/server/js; the Python package has no constant for them).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
NAME_SEPARATOR = " · "

_SQLITE_PREFIX = "sqlite:///"
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limits for one log_batch call
_MAX_PARAMS_PER_BATCH = 100
_LOCKED_ATTEMPTS = 8

_logger = logging.getLogger(__name__)


def init_store(uri: str | None = None) -> str:
    """Resolve the tracking URI and make sure an SQLite store exists; return the URI.

    Precedence: the ``MLFLOW_TRACKING_URI`` environment variable (the switch to a tracking
    server on a cluster), then ``uri``, then :data:`DEFAULT_URI`. A plain path names an SQLite
    file. SQLite URIs come back absolute, so a later ``chdir`` does not move the store.

    Safe to call from many processes at once: the first creation runs under an exclusive
    ``flock`` on ``<db>.lock`` (local file systems only), and a store that is already
    complete is recognised without taking the lock.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or uri or DEFAULT_URI
    if "://" not in uri:
        uri = _SQLITE_PREFIX + uri
    if not uri.startswith(_SQLITE_PREFIX):
        return uri
    db_path = Path(uri.removeprefix(_SQLITE_PREFIX)).absolute()
    uri = f"{_SQLITE_PREFIX}{db_path}"
    if not _is_initialised(db_path):
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(db_path.with_name(db_path.name + ".lock")):
            if not _is_initialised(db_path):
                _create_store(db_path, uri)
    return uri


def _is_initialised(db_path: Path) -> bool:
    """Whether the schema is at this MLflow's newest migration and the default experiment,
    which MLflow writes after the migrations, exists. Any error (no file, half-made file,
    busy file) means "not yet": the caller then takes the lock and checks again."""
    if not db_path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
            default = db.execute("SELECT 1 FROM experiments WHERE experiment_id = 0").fetchone()
    except sqlite3.Error:
        return False
    return revision == (_newest_schema_revision(),) and default is not None


@functools.lru_cache(maxsize=1)
def _newest_schema_revision() -> str:
    """The newest migration of the installed MLflow: fixed for the process, and reading it loads
    every alembic script (80 ms, a third of what tracking one run costs)."""
    return _get_latest_schema_revision()


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on lock_path; closing the file releases it, even on a crash."""
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _create_store(db_path: Path, uri: str) -> None:
    """Switch the file to WAL (persistent; readers then never block the writer), then let
    MLflow create its tables, run its migrations and add the default experiment."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
    MlflowClient(uri).get_experiment("0")


class _RetryingClient:
    """An MlflowClient whose calls are retried, with backoff, while SQLite says "database is
    locked".

    MLflow sets a 20 s ``busy_timeout`` on each SQLite session, so writers normally queue.
    But SQLite answers "locked" at once, without waiting, when waiting could deadlock: a
    transaction that read and now wants to write while another process wrote (MLflow's
    sessions read the run before writing). The failed transaction was rolled back, so calling
    again is safe. Against a tracking server, MLflow's HTTP client already retries answers
    429 and 503.
    """

    def __init__(self, uri: str) -> None:
        self._client = MlflowClient(uri)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return functools.partial(_retry_while_locked, getattr(self._client, name))


def _retry_while_locked(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    for attempt in range(_LOCKED_ATTEMPTS - 1):
        try:
            return call(*args, **kwargs)
        except MlflowException as error:
            if "database is locked" not in str(error):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))
    return call(*args, **kwargs)


class TrackedRun:
    """The MLflow run of one training run, as handed out by :func:`tracked_run`.

    Metrics are buffered and sent with ``log_batch`` (one database transaction or HTTP
    request per batch), when 1000 values are pending or ``flush_secs`` have passed since the
    last send, and when the run ends. The caller picks how often to log (every step, every
    k steps); ``flush_secs`` only bounds how stale the UI can be.
    """

    def __init__(self, client: _RetryingClient, run_id: str, flush_secs: float) -> None:
        self.run_id = run_id
        self._client = client
        self._flush_secs = flush_secs
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record metric values (floats or 0-d tensors) at a training step."""
        timestamp = int(time.time() * 1000)
        self._pending += [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        if (
            len(self._pending) >= _MAX_METRICS_PER_BATCH
            or time.monotonic() - self._last_flush >= self._flush_secs
        ):
            self.flush()

    def flush(self) -> None:
        """Send the pending metrics now."""
        while self._pending:
            self._client.log_batch(self.run_id, metrics=self._pending[:_MAX_METRICS_PER_BATCH])
            del self._pending[:_MAX_METRICS_PER_BATCH]
        self._last_flush = time.monotonic()

    def log_json(self, name: str, obj: Any) -> None:
        """Store obj as the JSON artifact ``name`` (e.g. "placement.json")."""
        self._log_file(name, lambda path: path.write_text(json.dumps(obj, indent=2, sort_keys=True)))

    def log_tensors(self, name: str, tensors: Mapping[str, Any]) -> None:
        """Store a dict of torch tensors (e.g. the adapters' state_dict) as the safetensors
        artifact ``name``. Tensors are copied to the CPU first, which also unties shared
        storage that safetensors refuses."""
        from safetensors.torch import save_file  # torch is imported only by runs that save weights

        copies = {key: tensor.detach().to("cpu", copy=True).contiguous() for key, tensor in tensors.items()}
        self._log_file(name, lambda path: save_file(copies, str(path)))

    def _log_file(self, name: str, write: Callable[[Path], Any]) -> None:
        folder_in_run = str(Path(name).parent)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(name).name
            write(path)
            self._client.log_artifact(self.run_id, str(path), None if folder_in_run == "." else folder_in_run)

    def _end(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status)

    def _end_early(self, status: str) -> None:
        """End a run left by an exception. The metrics measured before it help to see why, so
        they are sent, but a failure to send them must not hide the training error."""
        try:
            self.flush()
        except MlflowException as error:
            _logger.warning("could not send the last metrics of run %s: %s", self.run_id, error)
        self._end(status)


@contextlib.contextmanager
def tracked_run(
    experiment: str,
    run_key: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
    flush_secs: float = 30.0,
    datasets: Sequence[DatasetRecord] = (),
) -> Iterator[TrackedRun]:
    """Track one training run as an MLflow run in ``experiment``.

    ``run_key`` names the result this run produces (one key per result file); it is the run's
    ``run_key`` tag and the basis of the retry policy in the module docstring. ``params`` are
    logged as given, plus ``config_hash`` (of ``params``, unless given), ``package_version``
    and ``git_commit``. ``tags`` group runs, e.g. by table and cell; with ``cell`` and ``seed``
    the run is a child of its cell's parent run, and they name it (:func:`run_name`).
    ``datasets`` are logged as the run's inputs (:func:`task_datasets` makes them).

    The run ends FINISHED when the block completes, FAILED when it raises an Exception, and
    KILLED when it is left by KeyboardInterrupt, SIGTERM (turned into ``SystemExit(143)`` while
    the block runs in the main thread) or another BaseException; the exception propagates.
    A SIGKILLed process leaves its run RUNNING until the retry ends it as KILLED.
    """
    uri = init_store(uri)
    client = _RetryingClient(uri)
    tags = {key: str(value) for key, value in (tags or {}).items()}
    experiment_id = _experiment_id(client, experiment, uri)
    stale = _runs_with_key(client, experiment_id, run_key, "RUNNING")
    parent_id = _cell_parent(client, experiment_id, tags, uri)
    run = TrackedRun(client, _create_run(client, experiment_id, run_key, tags, parent_id), flush_secs)
    with _sigterm_raises_system_exit():
        try:
            _log_params(client, run.run_id, params)
            _log_datasets(client, run.run_id, datasets)
            for old in stale:
                _supersede(client, old, run.run_id)
            yield run
            run.flush()
            for old in _runs_with_key(client, experiment_id, run_key, "FINISHED"):
                _supersede(client, old, run.run_id)
            run._end("FINISHED")
        except Exception:
            run._end_early("FAILED")
            raise
        except BaseException:
            run._end_early("KILLED")
            raise


def _experiment_id(client: _RetryingClient, name: str, uri: str) -> str:
    """Id of the experiment ``name``, created on first use, also when another process
    creates it at the same moment, and tagged as model training (also when a store made
    before the tag existed holds it)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri, name),
                                            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # a user's own choice of kind is kept
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return experiment.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """A folder next to an SQLite store (MLflow would otherwise write to ./mlruns of whatever
    the working directory is); None lets a tracking server use its own artifact root."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    db_path = Path(uri.removeprefix(_SQLITE_PREFIX))
    return str(db_path.parent / "mlartifacts" / re.sub(r"[^\w.-]+", "_", experiment))


def run_name(tags: Mapping[str, str], run_key: str) -> str:
    """The name the UI shows: the run's cell without its leading experiment folder, then its
    seed, e.g. cell "table1/inat18/adapters-r128-gelu/parallel_all" and seed 0 give
    "inat18 · adapters-r128-gelu · parallel_all · seed 0" (the variant stays: Fig. 6c, Fig. 9
    and Table 5 have cells that differ by it alone). A run without a cell is named by its key."""
    if "cell" not in tags:
        return run_key
    name = _cell_name(tags["cell"])
    return f"{name}{NAME_SEPARATOR}seed {tags['seed']}" if "seed" in tags else name


def _cell_name(cell: str) -> str:
    parts = cell.split("/")
    return NAME_SEPARATOR.join(parts[1:] if len(parts) > 1 else parts)


def _create_run(client: _RetryingClient, experiment_id: str, run_key: str, tags: Mapping[str, str],
                parent_id: str | None) -> str:
    run_tags = {**tags, RUN_KEY_TAG: run_key}
    if parent_id is not None:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent_id
    return client.create_run(experiment_id, tags=run_tags, run_name=run_name(tags, run_key)).info.run_id


def _cell_parent(client: _RetryingClient, experiment_id: str, tags: Mapping[str, str], uri: str) -> str | None:
    """Id of the parent run of the run's cell, made by the cell's first run; None for a run
    that is not one seed of a cell. Find-or-create holds the store's flock (SQLite), so
    concurrent seeds make one parent; on a server later seeds take the oldest (module docstring)."""
    if "cell" not in tags or "seed" not in tags:
        return None
    with _store_lock(uri):
        parents = _cell_parents(client, experiment_id, tags["cell"])
        if not parents:
            parent_tags = {"cell": tags["cell"], CELL_PARENT_TAG: "true"}
            parent = client.create_run(experiment_id, tags=parent_tags, run_name=_cell_name(tags["cell"]))
            client.set_terminated(parent.info.run_id, "FINISHED")  # a container, never a running job
            parents = _cell_parents(client, experiment_id, tags["cell"])
    return parents[0].info.run_id


def _cell_parents(client: _RetryingClient, experiment_id: str, cell: str) -> list[Run]:
    return client.search_runs([experiment_id], _filter("FINISHED", {"cell": cell, CELL_PARENT_TAG: "true"}),
                              max_results=10, order_by=["attributes.start_time ASC", "attributes.run_id ASC"])


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """The flock of an SQLite store (:func:`init_store`); nothing for a tracking server."""
    if not uri.startswith(_SQLITE_PREFIX):
        yield
        return
    db_path = Path(uri.removeprefix(_SQLITE_PREFIX))
    with _exclusive_lock(db_path.with_name(db_path.name + ".lock")):
        yield


@dataclass(frozen=True)
class DatasetRecord:
    """One split a run reads, as an MLflow dataset input: ``name`` and ``digest`` identify the
    data (MLflow keeps one dataset per name and digest in an experiment), ``split`` is the
    input's context, ``sizes`` the task's split sizes, ``source`` where the data comes from."""

    name: str
    digest: str
    split: str
    sizes: Mapping[str, int]
    source: Mapping[str, str]

    def to_input(self) -> DatasetInput:
        profile = {"num_rows": self.sizes.get(self.split), "split_sizes": dict(self.sizes)}
        dataset = Dataset(self.name, self.digest, source_type="code",  # made by adapter_placement.data
                          source=json.dumps({"tags": dict(self.source)}, sort_keys=True),
                          profile=json.dumps(profile, sort_keys=True))
        return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, self.split)])


def task_datasets(task: Any, splits: Iterable[str]) -> list[DatasetRecord]:
    """The dataset records of the splits a run reads from ``task`` (a ``data.tasks.Task``: ``name``,
    ``split_sizes``, ``digest(split)``), each split once."""
    sizes = {split: int(size) for split, size in task.split_sizes.items()}
    return [DatasetRecord(task.name, _split_digest(task, split, sizes), split, sizes, _task_source(task, split))
            for split in dict.fromkeys(splits)]


def _split_digest(task: Any, split: str, sizes: Mapping[str, int]) -> str:
    """The task's digest of the split's tensors (what the prefix cache keys on) for an
    in-memory task. A streamed (tfds) task would have to be read whole, iNat18 included, so
    there the digest is of what fixes its examples: the prepared dataset, the split rule's
    sizes and the data seed."""
    if isinstance(getattr(task, "splits", None), Mapping):
        return task.digest(split)
    return config_hash({"task": task.name, "split": split, "sizes": sizes, **_task_source(task, split)})


def _task_source(task: Any, split: str) -> dict[str, str]:
    source = {"task": task.name, "split": split, "loader": "adapter_placement.data.load_task"}
    if hasattr(task, "seed"):
        source["data_seed"] = str(task.seed)
    info = getattr(getattr(task, "builder", None), "info", None)
    if info is not None:  # the prepared tfds dataset and its version, e.g. "svhn_cropped/3.1.0"
        source["tfds"] = str(getattr(info, "full_name", getattr(info, "name", "")))
    return source


def _log_datasets(client: _RetryingClient, run_id: str, datasets: Sequence[DatasetRecord]) -> None:
    if not datasets:
        return
    inputs = [record.to_input() for record in datasets]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException:  # a server's concurrent run inserted the same dataset first:
        client.log_inputs(run_id, datasets=inputs)  # now it exists and is linked, not inserted


def _log_params(client: _RetryingClient, run_id: str, params: Mapping[str, Any]) -> None:
    logged = {
        "config_hash": config_hash(params),
        "package_version": package_version(),
        "git_commit": git_commit() or "unknown",
        **params,
    }
    all_params = [Param(key, str(value)) for key, value in logged.items()]
    for start in range(0, len(all_params), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=all_params[start : start + _MAX_PARAMS_PER_BATCH])


def _runs_with_key(client: _RetryingClient, experiment_id: str, run_key: str, status: str) -> list[Run]:
    return client.search_runs(
        [experiment_id], _filter(status, {RUN_KEY_TAG: run_key}), max_results=1000
    )


def _supersede(client: _RetryingClient, old: Run, new_run_id: str) -> None:
    """Mark an earlier run of the same result as replaced. A RUNNING one gets its end time
    now (its process is gone, when exactly is unknown); a FINISHED one keeps its own."""
    client.set_tag(old.info.run_id, SUPERSEDED_TAG, new_run_id)
    if old.info.status == "RUNNING":
        client.set_terminated(old.info.run_id, "KILLED")
    else:
        client.update_run(old.info.run_id, status="KILLED")


@contextlib.contextmanager
def _sigterm_raises_system_exit() -> Iterator[None]:
    """Turn SIGTERM, which Snakemake and SLURM send to cancel a job, into SystemExit(143) so
    that the run is ended as KILLED rather than left RUNNING. Python lets only the main
    thread set signal handlers; elsewhere SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def find_runs(experiment: str, uri: str | None = None, **tags: str) -> list[Run]:
    """FINISHED runs of ``experiment`` whose tags equal ``tags``, oldest first; e.g.
    ``find_runs("table1", cell="table1/svhn/random_24_017")`` gives the seeds of one cell,
    and their ``run.info.run_id`` the ids a report can name."""
    client = _RetryingClient(init_store(uri))
    experiment_found = client.get_experiment_by_name(experiment)
    if experiment_found is None:
        return []
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_found.experiment_id],
            _filter("FINISHED", tags),
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=page_token,
        )
        runs += [run for run in page if CELL_PARENT_TAG not in run.data.tags]  # containers, not results
        page_token = page.token
        if not page_token:
            return runs


def _filter(status: str, tags: Mapping[str, str]) -> str:
    """An MLflow search filter. Its string literals have no escape for quotes, so a value
    holding a single quote is refused rather than silently matching nothing."""
    conditions = [f"attributes.status = '{status}'"]
    for key, value in tags.items():
        if "'" in str(value) or "`" in key:
            raise ValueError(f"cannot search for tag {key!r} = {value!r}: quotes are not supported")
        conditions.append(f"tags.`{key}` = '{value}'")
    return " and ".join(conditions)


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the config as canonical JSON (sorted keys, no
    spaces), so key order does not change it; values JSON cannot encode are hashed by str()."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def git_commit(path: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD commit of the git checkout holding ``path`` (default: this package's source);
    None when that is not a git checkout or git is missing. Never raises."""
    folder = Path(path) if path is not None else Path(__file__).parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def package_version() -> str:
    """Version of this package, from its source so that an editable install reports the code
    that ran."""
    return __version__
