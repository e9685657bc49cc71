"""Tests of adapter_placement.tracking against real MLflow: SQLite stores, a local
`mlflow server`, and real subprocesses for kills and concurrent first use (see
tests/_tracking_worker.py). No mocks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

import adapter_placement
from adapter_placement.tracking import (
    RUN_KEY_TAG,
    SUPERSEDED_TAG,
    config_hash,
    find_runs,
    git_commit,
    init_store,
    package_version,
    tracked_run,
)

WORKER = Path(__file__).with_name("_tracking_worker.py")
WORKER_STEPS = 5  # _tracking_worker.STEPS
N_CONCURRENT = 8


def run_status(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.status


def runs_with_key(uri: str, experiment: str, run_key: str) -> list:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], f"tags.{RUN_KEY_TAG} = '{run_key}'")


# --- helpers ------------------------------------------------------------------------------


def test_config_hash_ignores_key_order_and_sees_values() -> None:
    assert config_hash({"lr": 1e-3, "rank": 8}) == config_hash({"rank": 8, "lr": 1e-3})
    assert config_hash({"lr": 1e-3, "rank": 8}) != config_hash({"lr": 1e-3, "rank": 16})
    assert len(config_hash({"edges": [(0, 1)], "path": Path("x")})) == 16


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's object id of the empty tree


def _commit_object_id(message: str, stamp: str) -> str:
    """The sha1 id git gives a root commit of the empty tree, computed from git's object format."""
    body = (f"tree {EMPTY_TREE}\nauthor A <a@example.org> {stamp}\ncommitter A <a@example.org> {stamp}\n"
            f"\n{message}\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def _repo_with_known_commit(folder: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.org", "GIT_COMMITTER_NAME": "A",
           "GIT_COMMITTER_EMAIL": "a@example.org", "GIT_AUTHOR_DATE": "1700000000 +0000",
           "GIT_COMMITTER_DATE": "1700000000 +0000", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "known"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return _commit_object_id("known", "1700000000 +0000")


def _head_of_package() -> str | None:
    """What `git rev-parse HEAD` says in the package's folder, run here (None outside a checkout)."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(adapter_placement.__file__).parent,
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _is_ancestor(older: str, newer: str) -> bool:
    """older is newer or one of its ancestors (other sessions may commit while a test runs)."""
    return subprocess.run(["git", "merge-base", "--is-ancestor", older, newer],
                          cwd=Path(adapter_placement.__file__).parent).returncode == 0


def test_git_commit_and_package_version(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    assert git_commit(tmp_path / "missing") is None
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "inner").mkdir()
    known = _repo_with_known_commit(repo)
    assert git_commit(repo) == known and git_commit(repo / "inner") == known
    before = _head_of_package()
    commit = git_commit()
    after = _head_of_package()
    if before is None:
        assert commit is None
    else:  # equal to HEAD of this checkout (which others may move on meanwhile)
        assert commit is not None and _is_ancestor(before, commit) and _is_ancestor(commit, after)
    assert package_version() == adapter_placement.__version__


def test_init_store_resolution(store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = store_uri.removeprefix("sqlite:///")
    assert Path(db_path).is_absolute()
    monkeypatch.chdir(Path(db_path).parent)
    assert init_store("mlflow.db") == store_uri
    assert init_store("sqlite:///mlflow.db") == store_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert init_store("mlflow.db") == "http://127.0.0.1:9"


# --- one run in this process --------------------------------------------------------------


def test_run_logs_params_metrics_artifacts_and_tags(store_uri: str, experiment: str, tmp_path: Path) -> None:
    params = {"method": "gga", "edges": [(0, 3), (2, 5)], "rank": 8, "lr": 1e-3, "seed": 0}
    tags = {"table": "table1", "cell": "table1/svhn/gga"}
    weights = {"adapter.0.down": torch.randn(8, 16), "adapter.0.up": torch.randn(16, 8)}
    head_before = _head_of_package()
    with tracked_run(experiment, "table1/svhn/gga/seed0", params, tags, uri=store_uri, flush_secs=0) as run:
        for step in range(0, 30, 10):
            run.log_metrics({"train_loss": 1.0 / (step + 1), "lr": torch.tensor(1e-3)}, step=step)
        run.log_metrics({"val_acc": 0.8, "test_acc": 0.75}, step=30)
        run.log_json("placement.json", {"edges": params["edges"]})
        run.log_tensors("adapters.safetensors", weights)

    client = MlflowClient(store_uri)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    head_after = _head_of_package()
    logged_commit = logged.data.params.pop("git_commit")
    assert logged.data.params == {
        **{key: str(value) for key, value in params.items()},
        "config_hash": config_hash(params),
        "package_version": adapter_placement.__version__,
    }
    if head_before is None:  # not a git checkout: said so
        assert logged_commit == "unknown"
    else:  # the checkout's HEAD, by git run here
        assert _is_ancestor(head_before, logged_commit) and _is_ancestor(logged_commit, head_after)
    assert logged.data.tags[RUN_KEY_TAG] == "table1/svhn/gga/seed0"
    assert logged.data.tags["cell"] == "table1/svhn/gga"
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "train_loss")] == [
        (0, 1.0), (10, 1 / 11), (20, 1 / 21)
    ]
    assert logged.data.metrics["test_acc"] == 0.75

    db_folder = Path(store_uri.removeprefix("sqlite:///")).parent
    assert Path(logged.info.artifact_uri.removeprefix("file://")).is_relative_to(db_folder / "mlartifacts")
    placement = client.download_artifacts(run.run_id, "placement.json", str(tmp_path))
    assert json.loads(Path(placement).read_text()) == {"edges": [[0, 3], [2, 5]]}
    loaded = load_file(client.download_artifacts(run.run_id, "adapters.safetensors", str(tmp_path)))
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)

    assert [r.info.run_id for r in find_runs(experiment, uri=store_uri, cell="table1/svhn/gga")] == [run.run_id]
    assert find_runs(experiment, uri=store_uri, cell="table1/svhn/other") == []
    assert find_runs("no such experiment", uri=store_uri) == []


def test_exception_marks_run_failed_and_propagates(store_uri: str, experiment: str) -> None:
    with pytest.raises(ValueError, match="diverged"):
        with tracked_run(experiment, "key", {}, uri=store_uri) as run:
            run.log_metrics({"train_loss": float("nan")}, step=0)
            raise ValueError("loss diverged")
    assert run_status(store_uri, run.run_id) == "FAILED"
    assert "train_loss" in MlflowClient(store_uri).get_run(run.run_id).data.metrics
    assert find_runs(experiment, uri=store_uri) == []


def test_keyboard_interrupt_marks_run_killed(store_uri: str, experiment: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(experiment, "key", {}, uri=store_uri) as run:
            raise KeyboardInterrupt
    assert run_status(store_uri, run.run_id) == "KILLED"


def test_rerun_supersedes_the_finished_run(store_uri: str, experiment: str) -> None:
    with tracked_run(experiment, "key", {"seed": 0}, uri=store_uri) as first:
        pass
    first_end_time = MlflowClient(store_uri).get_run(first.run_id).info.end_time
    with tracked_run(experiment, "key", {"seed": 0}, uri=store_uri) as second:
        pass
    old = MlflowClient(store_uri).get_run(first.run_id)
    assert (old.info.status, old.info.end_time) == ("KILLED", first_end_time)
    assert old.data.tags[SUPERSEDED_TAG] == second.run_id
    assert [r.info.run_id for r in find_runs(experiment, uri=store_uri)] == [second.run_id]


# --- real subprocesses --------------------------------------------------------------------


_started_workers: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def kill_leftover_workers() -> Iterator[None]:
    """A failed assertion must not leave a hanging worker behind."""
    yield
    while _started_workers:
        worker = _started_workers.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def start_worker(experiment: str, run_key: str, mode: str, go_file: Path, cwd: Path, env: dict) -> subprocess.Popen:
    """Start a worker; its stderr goes to <cwd>/<run_key>.stderr."""
    with open(cwd / f"{run_key.replace('/', '_')}.stderr", "w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), experiment, run_key, mode, str(go_file)],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    _started_workers.append(worker)
    return worker


def wait_ready(worker: subprocess.Popen) -> None:
    """Wait until the worker has done its imports and waits for its go file."""
    assert worker.stdout.readline() == "ready\n", f"worker exited with {worker.wait()}"


def run_hanging_worker(uri: str, experiment: str, run_key: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A worker that started its run and now hangs; returns it and its run id."""
    go_file = tmp_path / "go"
    go_file.touch()
    worker = start_worker(experiment, run_key, "hang", go_file, tmp_path, {**os.environ, "MLFLOW_TRACKING_URI": uri})
    wait_ready(worker)
    run_id = worker.stdout.readline().strip()
    assert run_id, f"worker exited with {worker.wait()}; see {tmp_path}"
    return worker, run_id


def test_sigkilled_run_is_ended_by_the_retry(store_uri: str, experiment: str, tmp_path: Path) -> None:
    worker, killed_run_id = run_hanging_worker(store_uri, experiment, "key", tmp_path)
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    assert run_status(store_uri, killed_run_id) == "RUNNING"

    with tracked_run(experiment, "key", {}, uri=store_uri) as retry:
        retry.log_metrics({"train_loss": 0.1}, step=0)

    statuses = {run.info.run_id: run.info.status for run in runs_with_key(store_uri, experiment, "key")}
    assert statuses == {killed_run_id: "KILLED", retry.run_id: "FINISHED"}
    assert MlflowClient(store_uri).get_run(killed_run_id).data.tags[SUPERSEDED_TAG] == retry.run_id


def test_sigterm_marks_run_killed(store_uri: str, experiment: str, tmp_path: Path) -> None:
    worker, run_id = run_hanging_worker(store_uri, experiment, "key", tmp_path)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=60) == 128 + signal.SIGTERM
    assert run_status(store_uri, run_id) == "KILLED"


def run_concurrent_workers(experiment: str, cwd: Path, env: dict) -> list[str]:
    """Start N_CONCURRENT workers, release them at once, wait for all; return their run keys."""
    go_file = cwd / "go"
    run_keys = [f"{experiment}/seed{seed}" for seed in range(N_CONCURRENT)]
    workers = [start_worker(experiment, key, "train", go_file, cwd, env) for key in run_keys]
    for worker in workers:
        wait_ready(worker)
    go_file.touch()
    for worker in workers:
        assert worker.wait(timeout=120) == 0, f"a worker failed; see the *.stderr files in {cwd}"
    return run_keys


def assert_one_finished_run_each(uri: str, experiment: str, run_keys: list[str]) -> None:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    assert sorted(run.data.tags[RUN_KEY_TAG] for run in runs) == sorted(run_keys)
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == WORKER_STEPS
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["placement.json"]


@pytest.mark.slow
def test_concurrent_first_use_of_the_sqlite_default(tmp_path: Path) -> None:
    run_keys = run_concurrent_workers("concurrent", tmp_path, dict(os.environ))
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    assert_one_finished_run_each(uri, "concurrent", run_keys)
    worker_logs = "".join(log.read_text() for log in tmp_path.glob("*.stderr"))
    assert worker_logs.count("Creating initial MLflow database tables") == 1
    assert {run.data.tags[RUN_KEY_TAG] for run in find_runs("concurrent", uri=uri)} == set(run_keys)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answers(url: str, server: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow server exited; see server.log"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on a free localhost port with its store and artifacts in tmp_path;
    stopped through its process group, which holds its uvicorn workers too."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination", str(tmp_path / "server-artifacts"),
        "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_until_answers(f"{url}/health", server)
        yield url
    finally:
        stop_process_group(server)


def stop_process_group(leader: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGTERM)
        try:
            leader.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()


@pytest.mark.slow
def test_concurrent_runs_against_a_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    workers_dir = tmp_path / "workers"
    workers_dir.mkdir()
    run_keys = run_concurrent_workers("server", workers_dir, {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server})
    assert_one_finished_run_each(mlflow_server, "server", run_keys)
    assert not (workers_dir / "results").exists()
