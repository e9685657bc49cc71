"""The SLURM profile (slurm/config.yaml) against a real one-node SLURM cluster.

The fixture builds the cluster from Debian's `slurmctld slurmd slurm-client munge` packages (`.ci/run`
installs them): a private munge key and munged, a minimal slurm.conf (no accounting database, so the
profile is run with the plugin's `squeue` status command, which MinJobAge=3600 makes reliable), one
node with the machine's real CPUs and memory, and one GPU backed by /dev/null so that the profile's
GPU requests (`--gpus=1`) are scheduled for real (jobs see CUDA_VISIBLE_DEVICES=0; torch finds no CUDA
device and runs on the CPU). Daemons run in the foreground under this process, die with it
(PR_SET_PDEATHSIG) and are stopped by pid in teardown.

Inside a job the plugin's jobstep runs `srun` with every SLURM_* variable removed, SLURM_CONF
included, so `srun` finds the cluster's slurm.conf the way compute nodes of a configless cluster do:
through /run/slurm/conf/slurm.conf. The fixture links that path to its slurm.conf for the test's
lifetime (it refuses to run where /etc/slurm/slurm.conf or a foreign /run/slurm/conf exists, and
a lock serialises concurrent runs on one machine). This needs root, as CI has.

Without SLURM binaries (or root) the tests skip with the reason; with ADAPTER_PLACEMENT_REQUIRE_SLURM=1
(CI) that is a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm" / "config.yaml"
TINY_CONFIG = "config/tiny.yaml"
REQUIRE = os.environ.get("ADAPTER_PLACEMENT_REQUIRE_SLURM") == "1"

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")  # Debian's compiled-in default
CONFIGLESS_CONF = Path("/run/slurm/conf/slurm.conf")  # where clients look next
LOCK_FILE = Path("/run/lock" if Path("/run/lock").is_dir() else tempfile.gettempdir()) / (
    "adapter-placement-slurm-test.lock")
TMP_PREFIX = "adapter-placement-slurm-"
PARTITION = "aptest"  # not the default partition: the profile's slurm_partition must reach sbatch
STARTUP_TIMEOUT = 90
LOCK_TIMEOUT = 600
WORKFLOW_TIMEOUT = 1200  # each snakemake run (local and SLURM)
# Targets of the tiny config run both ways: 18 jobs (14 on SLURM), every kind of rule: local
# (prepare_data, model_info), training or scoring on a GPU (pretrain_vit, lr_trials, scores, fig3_runs,
# table5_runs, fig8_runs), CPU-only (select_lr, tables, a figure), a vision and a text
# model. The whole tiny DAG (~80 jobs) takes ~15 min a run on 2 shared cores; on SLURM each wave of
# dependent jobs also waits for the plugin's status checks. The pipeline's own tests run all of it.
TARGETS = ["table4", "table5", "figure8"]

pytestmark = [pytest.mark.slow]


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"ADAPTER_PLACEMENT_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def _die_with_parent() -> None:
    """preexec_fn: the daemon gets SIGTERM when the test process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<{e}>"
    return "\n".join(lines[-n:])


def _node_spec() -> dict[str, str]:
    """The machine's real CPUs and memory, as slurmd itself sees them (`slurmd -C`)."""
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    try:
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
        spec = dict(tok.split("=", 1) for tok in out.splitlines()[0].split() if "=" in tok)
        return {k: spec[k] for k in keys}
    except Exception:  # noqa: BLE001 - fall back to what Python sees
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        return {"CPUs": str(os.cpu_count() or 1), "RealMemory": str(mem_kb // 1024)}


class Cluster:
    """A running one-node cluster: its environment, clients and logs."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.log = root / "log"
        self.node = socket.gethostname().split(".")[0]
        self.partition = PARTITION
        self.procs: dict[str, subprocess.Popen] = {}
        # no SLURM job context of the caller, no MLflow server of the developer's shell
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))
                    and k != "MLFLOW_TRACKING_URI"}
        self.env["SLURM_CONF"] = str(self.conf)
        self.spec = _node_spec()

    # -- clients ---------------------------------------------------------------------------------
    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> str:
        res = subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}\n{self.logs()}")
        return res.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones stay MinJobAge=3600 s), `scontrol -o` fields."""
        out = self.run("scontrol", "-o", "show", "jobs", check=False)
        jobs = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                jobs.append(dict(m.groups() for m in re.finditer(r"(\w[\w/:]*)=(\S*)", line)))
        return jobs

    def logs(self) -> str:
        # the *.log files; *.out hold the same plus what a daemon printed before opening its log
        parts = [f"--- {p.name} (tail) ---\n{_tail(p, 25)}" for p in sorted(self.log.glob("*.log"))]
        parts += [f"--- {p.name} (tail) ---\n{_tail(p, 10)}" for p in sorted(self.log.glob("*.out"))]
        parts.append("--- squeue --states=all ---\n" + self._safe("squeue", "--states=all", "-o",
                                                                  "%i %j %T %P %r %k"))
        parts.append("--- sinfo -N -l ---\n" + self._safe("sinfo", "-N", "-l"))
        return "\n".join(parts)

    def _safe(self, *cmd: str) -> str:
        try:
            res = subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], env=self.env, capture_output=True,
                                 text=True, timeout=10)
            return res.stdout + res.stderr
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return f"<{e}>"

    # -- daemons ---------------------------------------------------------------------------------
    def start(self, name: str, *args: str) -> None:
        out = open(self.log / f"{name}.out", "w")  # noqa: SIM115 - lives as long as the daemon
        self.procs[name] = subprocess.Popen([_which(name), *args], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=_die_with_parent)

    def check_alive(self, what: str) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while {what}\n{self.logs()}")

    def wait_for(self, what: str, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(f"waiting for {what}")
            with contextlib.suppress(Exception):
                if predicate():
                    return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons (slurmd, slurmctld, munged) by pid."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--user", "root", check=False, timeout=15)  # this cluster's jobs
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.run(
                        "squeue", "-h", "--states=PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED",
                        check=False, timeout=10).strip():
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _stepds_of(prefix: str) -> list[int]:
    """Pids of slurmstepd processes with a file open under `prefix` (a test cluster's folder)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "slurmstepd":
                continue
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_stepds(prefix: str) -> None:
    """Job step daemons outlive slurmd by design; those of a test cluster that is gone are killed."""
    for pid in _stepds_of(prefix):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One test cluster per machine at a time: /run/slurm/conf and the daemons' names are global."""
    with open(LOCK_FILE, "a") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another SLURM test cluster held {LOCK_FILE} for {LOCK_TIMEOUT} s",
                                pytrace=False)
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _claim_configless_path(conf: Path) -> list[Path]:
    """Link /run/slurm/conf/slurm.conf to `conf`; returns what to remove afterwards."""
    created = [d for d in (CONFIGLESS_CONF.parent.parent, CONFIGLESS_CONF.parent) if not d.exists()]
    if CONFIGLESS_CONF.is_symlink() and TMP_PREFIX in os.readlink(CONFIGLESS_CONF):
        CONFIGLESS_CONF.unlink()  # left behind by a killed run of this test (we hold the lock)
    if CONFIGLESS_CONF.exists() or CONFIGLESS_CONF.is_symlink():
        _unavailable(f"{CONFIGLESS_CONF} exists (a configless slurmd runs here); the test cluster "
                     "would not be the one jobs talk to")
    CONFIGLESS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONFIGLESS_CONF.symlink_to(conf)
    return [CONFIGLESS_CONF, *reversed(created)]


def _write_config(c: Cluster, root: Path) -> None:
    spec = " ".join(f"{k}={v}" for k, v in c.spec.items())
    sock = root / "munge.sock"
    ctld_port, slurmd_port = _free_ports(2)
    c.conf.write_text(f"""\
# Written by tests/test_slurm.py: a throwaway one-node cluster.
ClusterName=adapter-placement-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={c.log / 'slurmctld.log'}
SlurmdLogFile={c.log / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
NodeName={c.node} NodeAddr=127.0.0.1 {spec} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={c.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITION} Nodes={c.node} Default=NO MaxTime=INFINITE State=UP
""")
    # gres.conf is read from slurm.conf's folder; /dev/null stands in for the GPU's device file
    (root / "gres.conf").write_text(f"NodeName={c.node} Name=gpu File=/dev/null\n")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Cluster]:
    missing = [n for n in (*DAEMONS, *CLIENTS) if _which(n) is None]
    if missing:
        _unavailable(f"SLURM/munge binaries missing: {', '.join(missing)} (apt-get install slurmctld "
                     "slurmd slurm-client munge)")
    if os.geteuid() != 0:
        _unavailable("the SLURM test cluster needs root (slurmd launches jobs; /run/slurm/conf)")
    if DEFAULT_CONF.exists():
        _unavailable(f"{DEFAULT_CONF} exists: srun inside the test's jobs would talk to that cluster")

    with _machine_lock():
        # a test process killed hard (SIGKILL) takes its daemons along, not their job steps
        _kill_stepds(str(Path(tempfile.gettempdir()) / TMP_PREFIX))
        root = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        root.chmod(0o755)  # munged wants its socket's folder searchable by all
        for d in ("state", "spool", "log", "munge"):
            (root / d).mkdir()
        (root / "munge").chmod(0o700)
        c = Cluster(root)
        to_remove: list[Path] = []
        try:
            _write_config(c, root)
            key = root / "munge" / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            sock = root / "munge.sock"
            c.start("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
                    f"--pid-file={root / 'munged.pid'}", f"--seed-file={root / 'munge' / 'seed'}",
                    f"--log-file={c.log / 'munged.log'}")
            c.wait_for("munged", lambda: subprocess.run(
                [_which("munge"), "-n", "-S", str(sock)], capture_output=True, timeout=5).returncode == 0,
                STARTUP_TIMEOUT)
            to_remove = _claim_configless_path(c.conf)
            c.start("slurmctld", "-D", "-f", str(c.conf))
            c.wait_for("slurmctld", lambda: bool(c.run("sinfo", "-h", check=False, timeout=5)),
                       STARTUP_TIMEOUT)
            c.start("slurmd", "-D", "-f", str(c.conf))
            c.wait_for(f"node {c.node} to be idle", lambda: c.run(
                "sinfo", "-h", "-N", "-n", c.node, "-o", "%T", check=False, timeout=5).split()[0] == "idle",
                STARTUP_TIMEOUT)
            yield c
        finally:
            c.stop()
            _kill_stepds(str(root))
            for p in to_remove:
                with contextlib.suppress(OSError):
                    p.unlink() if p.is_symlink() or p.is_file() else p.rmdir()
            if os.environ.get("ADAPTER_PLACEMENT_KEEP_SLURM_DIR") != "1":
                shutil.rmtree(root, ignore_errors=True)


# -- running snakemake ---------------------------------------------------------------------------

def _snakemake(args: list[str], cwd: Path, env: dict[str, str], timeout: float = WORKFLOW_TIMEOUT
               ) -> tuple[int | None, str]:
    """Run snakemake; on timeout SIGTERM it (it cancels its SLURM jobs), then SIGKILL. rc None = timeout."""
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        return None, out


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def _resource_args(profile: dict, spec: dict[str, str], mem_mb: int) -> list[str]:
    """The profile's resources, shrunk to fit the test node, as command-line overrides.

    Top-level keys given on the command line replace the profile's, so every per-rule entry is
    restated: GPU requests pass through (without a GPU type: the test node's GPU has none), CPUs,
    memory and runtime are capped; slurm_partition becomes the test partition; what the test cluster
    does not have goes (account: no accounting; qos, constraint, slurm_extra).
    """
    def shrink(res: dict) -> list[str]:
        out = []
        for k, v in res.items():
            if k in ("slurm_account", "slurm_partition", "slurm_extra", "qos", "constraint", "gpu_model"):
                continue
            if k == "gres":  # gpu:TYPE:N -> gpu:N
                v = re.sub(r"^gpu:[^:]+:(\d+)$", r"gpu:\1", str(v))
            elif k == "cpus_per_task":
                v = 1
            elif k in ("mem_mb", "mem"):
                k, v = "mem_mb", mem_mb
            elif k == "runtime":
                v = 30
            out.append(f"{k}={v}")
        if "gpu_model" in res and "gpu" not in res:
            out.append("gpu=1")  # the plugin's default count with a model
        return out

    defaults = {**(profile.get("default-resources") or {}), "cpus_per_task": 1, "mem_mb": mem_mb,
                "runtime": 30}
    args = ["--default-resources", f"slurm_partition={PARTITION}", *shrink(defaults)]
    per_rule = profile.get("set-resources") or {}
    if per_rule:
        args.append("--set-resources")
        for rule, res in per_rule.items():
            args += [f"{rule}:{kv}" for kv in shrink(res)]
    return args


def _gpu_rules(profile: dict) -> set[str]:
    per_rule = profile.get("set-resources") or {}
    return {r for r, res in per_rule.items()
            if res.get("gpu") or res.get("gpu_model") or "gpu" in str(res.get("gres", ""))}


# what a run writes, and what the workflow does not read (top level of the repository)
NOT_COPIED = {".git", ".venv", ".snakemake", ".pytest_cache", ".cache", "results", "figures", "data",
              "mlruns", "mlartifacts", "build", "benchmarks", "tests", "src"}


def _copy_workflow(dest: Path) -> Path:
    """The repository's workflow (Snakefile, config.yaml, workflow/, config/, slurm/, paper/, ...) in
    a fresh folder: the test's runs write their results, .snakemake and MLflow store there."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in {"__pycache__"} or n.endswith(".egg-info")}
        return skip | (NOT_COPIED & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def _slurm_args(c: Cluster, profile: dict, jobs: int = 2) -> list[str]:
    """`--profile slurm` and what the test cluster needs on top: squeue status checks, quick polling,
    kept SLURM logs, resources that fit the node (up to `jobs` SLURM jobs queued at once)."""
    node_mem = int(c.spec["RealMemory"])
    mem_mb = max(256, min(2000, node_mem // (2 * jobs)))
    return ["--profile", "slurm", "--jobs", str(jobs),
            "--slurm-status-command", "squeue",  # no accounting storage: sacct knows nothing
            "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
            "--slurm-keep-successful-logs", "--latency-wait", "10",
            *_resource_args(profile, c.spec, mem_mb)]


def _submitted(out: str) -> dict[str, str]:
    """SLURM job id -> rule name, from the snakemake log ("rule X:" ... "jobid: N" ... "Job N has
    been submitted with SLURM jobid M")."""
    rule_of, slurm, rule = {}, {}, None
    for line in out.splitlines():
        if m := re.match(r"\s*(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"\s+jobid: (\d+)", line)) and rule:
            rule_of[m.group(1)] = rule
        elif m := re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            slurm[m.group(2)] = rule_of.get(m.group(1), "?")
    return slurm


def _jobs_by_rule(out: str, kind: str = "(?:local)?rule") -> Counter:
    """How many jobs of each rule a snakemake log shows ("rule X:" remote, "localrule X:" local)."""
    return Counter(m.group(1) for m in re.finditer(rf"^{kind} (\w+):$", out, re.M))


def _check_slurm_jobs(c: Cluster, out: str, profile: dict, local_out: str | None = None) -> None:
    """Every non-local job of the run was a SLURM job that completed in the test partition, with a
    GPU exactly where the profile asks for one; with `local_out`, the same jobs as a local run."""
    submitted = _submitted(out)
    remote = _jobs_by_rule(out, "rule")
    assert submitted, f"no job was submitted to SLURM:\n{out[-4000:]}"
    assert Counter(submitted.values()) == remote, (
        f"jobs submitted to SLURM {dict(Counter(submitted.values()))} != remote jobs {dict(remote)}")
    if local_out is not None:
        assert _jobs_by_rule(out) == _jobs_by_rule(local_out), (
            f"SLURM run's jobs {dict(_jobs_by_rule(out))} != local run's {dict(_jobs_by_rule(local_out))}")
    known = {j["JobId"]: j for j in c.jobs()}
    gpu_rules = _gpu_rules(profile)
    for jobid, rule in submitted.items():
        job = known.get(jobid)
        assert job is not None, f"SLURM job {jobid} ({rule}) unknown to slurmctld\n{c.logs()}"
        assert job["JobState"] == "COMPLETED", f"job {jobid} ({rule}): {job}\n{c.logs()}"
        assert job["Partition"] == PARTITION, f"job {jobid} ({rule}) ran in {job['Partition']}"
        assert job.get("Comment", "").startswith(f"rule_{rule}"), job
        has_gpu = "gpu" in job.get("TresPerJob", "") + job.get("TresPerNode", "")
        assert has_gpu == (rule in gpu_rules), (
            f"job {jobid} ({rule}): GPU allocation {has_gpu}, profile says {rule in gpu_rules}: {job}")


# -- the profile against the workflow's rules (no SLURM needed) ----------------------------------

RULE_SHELLS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, ResourceSettings

with SnakemakeApi() as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path("Snakefile"),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]))
    print(json.dumps({r.name: r.shellcmd or "" for r in wf._workflow.rules}))
"""
# `python -m adapter_placement.pipeline <command>`: the commands that train or compute gradient scores
GPU_COMMANDS = {"train-batch", "pretrain", "scores", "search-batch"}


@pytest.mark.skipif(not (REPO / TINY_CONFIG).exists(), reason=f"{TINY_CONFIG} does not exist yet")
def test_profile_names_the_workflows_gpu_rules(tmp_path: Path) -> None:
    """The profile's per-rule resources name rules that exist, a GPU goes to exactly the rules that
    train or score, and `snakemake --profile slurm -n` accepts the profile."""
    wd = _copy_workflow(tmp_path / "wf")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    res = subprocess.run([sys.executable, "-c", RULE_SHELLS, TINY_CONFIG], cwd=wd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    shells = json.loads(res.stdout.strip().splitlines()[-1])
    command = {rule: (m.group(1) if (m := re.search(r"adapter_placement\.pipeline\s+([\w-]+)", sh)) else None)
               for rule, sh in shells.items()}
    profile = _profile()
    unknown = set(profile.get("set-resources") or {}) - set(shells)
    assert not unknown, f"slurm/config.yaml sets resources of rules the workflow lacks: {sorted(unknown)}"
    training = {rule for rule, cmd in command.items() if cmd in GPU_COMMANDS}
    assert _gpu_rules(profile) == training, (
        f"GPU in the profile but not training: {sorted(_gpu_rules(profile) - training)}; "
        f"training without a GPU in the profile: {sorted(training - _gpu_rules(profile))}")

    res = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile",
                          TINY_CONFIG, "--dry-run", "--quiet", "rules"], cwd=wd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"snakemake --profile slurm -n failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"


# -- a three-job workflow: the cluster and the plugin in ~1 min ------------------------------------

THREE_JOBS = """\
import json, os

rule all:
    input: "c.json"

rule a:
    output: "a.json"
    run:
        json.dump({"a": 1, "job": os.environ.get("SLURM_JOB_ID"),
                   "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, open(output[0], "w"))

rule b:
    input: "a.json"
    output: "b.json"
    run:
        json.dump({**json.load(open(input[0])), "b": 2,
                   "cuda_b": os.environ.get("CUDA_VISIBLE_DEVICES")}, open(output[0], "w"))

rule c:
    input: "b.json"
    output: "c.json"
    run:
        json.dump({**json.load(open(input[0])), "c": 3}, open(output[0], "w"))
"""


def test_three_job_workflow_through_the_plugin(slurm_cluster: Cluster, tmp_path: Path) -> None:
    """Three dependent jobs, one asking for a GPU, go through sbatch, srun and squeue."""
    c = slurm_cluster
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(THREE_JOBS)
    (wd / "config.yaml").write_text("three_jobs: true\n")  # in place of the profile's paper config
    shutil.copytree(REPO / "slurm", wd / "slurm")
    profile = {**_profile(), "set-resources": {"a": {"gpu": 1}}}  # this workflow's rules
    t0 = time.monotonic()
    rc, out = _snakemake(_slurm_args(c, profile) + ["--configfile", "config.yaml"], wd, c.env)
    assert rc == 0, f"snakemake on SLURM failed (rc={rc}) after {time.monotonic() - t0:.0f} s:\n" \
                    f"{out[-6000:]}\n{c.logs()}"
    _check_slurm_jobs(c, out, profile)
    assert _jobs_by_rule(out) == Counter(a=1, b=1, c=1, all=1), out
    result = json.loads((wd / "c.json").read_text())
    assert (result["a"], result["b"], result["c"]) == (1, 2, 3)
    assert result["job"] and result["job"].isdigit(), result  # rule a ran inside a SLURM job
    assert result["cuda"] == "0" and result["cuda_b"] is None, result  # the GPU went to rule a only


# -- the pipeline's tiny config: on SLURM and locally, same results ------------------------------

# fields that differ between any two runs (wall-clock, ids, hosts, paths), dropped before comparing
VOLATILE = re.compile(r"(second|time|duration|elapsed|timestamp|date|run_id|uuid|host|path|pid|"
                      r"mlflow)", re.I)
COMPARED = (".json", ".csv", ".tsv")
NOT_COMPARED = ("mlartifacts", "mlruns", "logs", "cache", "checkpoints")


def _normalise(obj):
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def _table(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    return [_normalise(row) for row in rows]


def _same(a, b, where: str) -> list[str]:
    """Differences between two parsed results; numbers (also as CSV strings) to 1e-6 relative."""
    def num(x):
        if isinstance(x, bool):
            return None
        if isinstance(x, (int, float)):
            return float(x)
        if isinstance(x, str):
            with contextlib.suppress(ValueError):
                return float(x)
        return None

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    x, y = num(a), num(b)
    if x is not None and y is not None:
        same = (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
    else:
        same = a == b
    return [] if same else [f"{where}: {a!r} != {b!r}"]


def _result_files(results: Path) -> dict[str, Path]:
    return {str(p.relative_to(results)): p for p in sorted(results.rglob("*"))
            if p.is_file() and p.suffix in COMPARED
            and not any(part in NOT_COMPARED for part in p.relative_to(results).parts)}


def _compare_results(local: Path, remote: Path) -> int:
    """Every JSON/CSV/TSV result of the local run equals its SLURM twin; returns how many."""
    a, b = _result_files(local), _result_files(remote)
    assert a, f"the local run wrote no JSON/CSV/TSV results under {local}"
    assert a.keys() == b.keys(), (f"result files differ: only local {sorted(a.keys() - b.keys())}, "
                                  f"only SLURM {sorted(b.keys() - a.keys())}")
    diffs = []
    for rel, p in a.items():
        if p.suffix == ".json":
            x, y = _normalise(json.loads(p.read_text())), _normalise(json.loads(b[rel].read_text()))
        else:
            x, y = _table(p), _table(b[rel])
        diffs += _same(x, y, rel)
    assert not diffs, "SLURM results differ from the local run's:\n" + "\n".join(diffs[:40])
    return len(a)


def _results_dir(wd: Path, config: str) -> Path:
    cfg = {}
    for f in (wd / "config.yaml", wd / config):
        cfg.update(yaml.safe_load(f.read_text()) or {})
    return wd / cfg.get("results", "results")


@pytest.mark.timeout(2 * WORKFLOW_TIMEOUT + 300)
@pytest.mark.skipif(not (REPO / TINY_CONFIG).exists(), reason=f"{TINY_CONFIG} does not exist yet")
def test_tiny_pipeline_on_slurm_equals_local_run(slurm_cluster: Cluster, tmp_path: Path) -> None:
    """`snakemake TARGETS --profile slurm --configfile config/tiny.yaml`: every non-local job a SLURM
    job; results equal to those of `snakemake TARGETS --cores 2 --configfile config/tiny.yaml`."""
    c = slurm_cluster
    profile = _profile()
    local, remote = _copy_workflow(tmp_path / "local"), _copy_workflow(tmp_path / "slurm")

    def timed(args: list[str], wd: Path) -> tuple[int | None, str, float]:
        t0 = time.monotonic()
        return (*_snakemake(args, wd, c.env), time.monotonic() - t0)

    # side by side: the SLURM run spends most of its time waiting for status checks
    with ThreadPoolExecutor(2) as pool:
        on_slurm = pool.submit(timed, [*TARGETS, *_slurm_args(c, profile, jobs=4), "--configfile",
                                       TINY_CONFIG], remote)
        here = pool.submit(timed, [*TARGETS, "--cores", "2", "--configfile", TINY_CONFIG], local)
        (rc_local, out_local, t_local), (rc, out, t_slurm) = here.result(), on_slurm.result()
    assert rc_local == 0, f"local run failed (rc={rc_local}) after {t_local:.0f} s:\n{out_local[-6000:]}"
    logs = "\n".join(f"--- {p.relative_to(remote)} ---\n{_tail(p, 30)}"
                     for p in sorted((remote / ".snakemake" / "slurm_logs").rglob("*.log")))
    assert rc == 0, (f"SLURM run failed (rc={rc}) after {t_slurm:.0f} s:\n{out[-6000:]}\n"
                     f"SLURM job logs:\n{logs[-6000:]}\n{c.logs()}")

    _check_slurm_jobs(c, out, profile, out_local)
    n = _compare_results(_results_dir(local, TINY_CONFIG), _results_dir(remote, TINY_CONFIG))
    print(f"local run {t_local:.0f} s, SLURM run {t_slurm:.0f} s, {n} result files equal")
