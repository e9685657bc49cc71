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

Store. The default is SQLite at ``results/mlflow.db`` (relative to the working directory) with
artifacts in ``results/mlartifacts/<experiment>``. ``MLFLOW_TRACKING_URI`` overrides it, e.g.
``http://host:5000`` for an ``mlflow server`` backed by PostgreSQL/MySQL on a cluster. Do not
put the SQLite file on a network file system (NFS, Lustre, GPFS): SQLite's locking and its WAL
mode are not reliable there, and neither is the ``flock`` used below; run a server instead.

Concurrency. First creation of an SQLite store runs alembic migrations; several processes
doing it at once fail ("duplicate column", "table already exists"). :func:`init_store` creates
it once, under an ``flock`` on ``<db>.lock``, and switches the file to WAL so that readers do not
block writers. Later writers may still meet "database is locked" (see :class:`_RetryingClient`).

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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run
from mlflow.exceptions import MlflowException

# Private, but the same helper MLflow's own schema check uses to know the newest migration.
from mlflow.store.db.utils import _get_latest_schema_revision

from adapter_placement import __version__

DEFAULT_URI = "sqlite:///results/mlflow.db"
RUN_KEY_TAG = "run_key"
SUPERSEDED_TAG = "superseded_by"

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
    return revision == (_get_latest_schema_revision(),) and default is not None


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
) -> Iterator[TrackedRun]:
    """Track one training run as an MLflow run in ``experiment``.

    ``run_key`` names the result this run produces (one key per result file); it is the run's
    name and its ``run_key`` tag, and the basis of the retry policy in the module docstring.
    ``params`` are logged as given, plus ``config_hash`` (of ``params``, unless given),
    ``package_version`` and ``git_commit``. ``tags`` group runs, e.g. by table and cell.

    The run ends FINISHED when the block completes, FAILED when it raises an Exception, and
    KILLED when it is left by KeyboardInterrupt, SIGTERM (turned into ``SystemExit(143)`` while
    the block runs in the main thread) or another BaseException; the exception propagates.
    A SIGKILLed process leaves its run RUNNING until the retry ends it as KILLED.
    """
    uri = init_store(uri)
    client = _RetryingClient(uri)
    experiment_id = _experiment_id(client, experiment, uri)
    stale = _runs_with_key(client, experiment_id, run_key, "RUNNING")
    run = TrackedRun(client, _create_run(client, experiment_id, run_key, tags or {}), flush_secs)
    with _sigterm_raises_system_exit():
        try:
            _log_params(client, run.run_id, params)
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
    creates it at the same moment."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """A folder next to an SQLite store (MLflow would otherwise write to ./mlruns of whatever
    the working directory is); None lets a tracking server use its own artifact root."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    db_path = Path(uri.removeprefix(_SQLITE_PREFIX))
    return str(db_path.parent / "mlartifacts" / re.sub(r"[^\w.-]+", "_", experiment))


def _create_run(client: _RetryingClient, experiment_id: str, run_key: str, tags: Mapping[str, str]) -> str:
    run_tags = {**{key: str(value) for key, value in tags.items()}, RUN_KEY_TAG: run_key}
    return client.create_run(experiment_id, tags=run_tags, run_name=run_key).info.run_id


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
        runs += page
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
