"""Fault tolerance, distribution and safety of `bench run` under Ray, checked the way a user meets them.

Two grids (each Ray start costs ~10 s here): one on a private local Ray instance (reachable from this
machine only, with a token; a worker SIGKILLed mid-run, then Ctrl-C, then the same command again) and
one on a two-node loopback cluster secured with a token (two `bench run` processes on one store at
once, one joining by --address, one by $RAY_ADDRESS; the second node stopped mid-run; tasks listed by
name). Plus cheap checks of the driver loop (a failed expert), the live view and the executor's rules.
"""
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from test_plugins import readme_plugin_source

from bench.config import ExecutionConfig, load_config
from bench.config.presets import PRESETS
from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import DONE, FAILED, LOG_FILE, METRICS_FILE, PROGRESS_FILE, RUN_CONFIG_FILE
from bench.engine.executors import RayExecutor, ray_address
from bench.engine.gpu_share import GpuShare
from bench.engine.progress import GridView, ProgressWriter, read_progress
from bench.engine.runner import UNRECORDED, run_suite
from bench.methods import REGISTRY, load_plugin

# RAY_AUTH_MODE=disabled as CI sets it: bench's private instance must be safe all the same.
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled",
       "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
BENCH = [sys.executable, "-m", "bench.cli"]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # `ray` of this environment: its workers import this bench


def write_suite(path: Path, **sections) -> Path:
    """The tiny preset plus `sections`, as a bench.toml (a preset would override the file's keys)."""
    tables = {k: dict(v) for k, v in PRESETS["tiny"].items()}
    for name, table in sections.items():
        tables.setdefault(name, {}).update(table)
    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
                            for name, table in tables.items()))
    return path


def progress_records(root: Path):
    for path in root.glob(f"runs/*/*/train-seed=*/*/{PROGRESS_FILE}"):
        record = read_progress(path)
        if record:
            yield path.parent, record


def counts(stdout: str) -> tuple[int, int]:
    trained, evaluated = re.search(r"(\d+) trained, (\d+) evaluated", " ".join(stdout.split())).groups()
    return int(trained), int(evaluated)


def samples(root: Path) -> dict:
    return {p.relative_to(root / "runs"): np.load(p)["images"] for p in root.glob("runs/**/samples.npz")}


def wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"bench run exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _ctrl_c_reaches_it():
    """In the child: SIGINT as in a terminal. A background job of a non-interactive shell (as CI may run
    this suite) ignores SIGINT, children inherit that, and `bench run` would finish its grid."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def listening_sockets(sid: int) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, program) of every TCP socket listening in session `sid` (a Ray instance's
    processes share the session of the process that started it), from /proc like `ss -ltnp`."""
    listening = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                words = [int(address[i:i + 8], 16) for i in range(0, len(address), 8)]  # native-order u32s
                listening[fields[9]] = socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words)), int(port, 16)
    found = []
    for pid in _session_pids(sid):
        try:
            program = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[0]
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # gone meanwhile
            continue
        inodes = {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}
        found += [(*listening[inode], pid, program) for inode in inodes & listening.keys()]
    return found


def _is_loopback(address: str) -> bool:
    return (getattr(ip := ipaddress.ip_address(address), "ipv4_mapped", None) or ip).is_loopback


def check_private_instance(driver: int) -> None:
    """Nothing of the Ray instance started by `driver` listens beyond loopback, and its GCS refuses a
    caller without the instance's token (or with another one) but answers one with it."""
    sockets = listening_sockets(driver)
    assert sockets and all(_is_loopback(address) for address, *_ in sockets), sockets
    (gcs_port, gcs_pid), = {(port, pid) for _, port, pid, program in sockets if program.endswith("gcs_server")}
    environ = dict(v.split("=", 1) for v in Path(f"/proc/{gcs_pid}/environ").read_text().split("\0") if "=" in v)
    get_nodes = grpc.insecure_channel(f"127.0.0.1:{gcs_port}").unary_unary("/ray.rpc.NodeInfoGcsService/GetAllNodeInfo")
    for token in (None, secrets.token_hex(32)):
        with pytest.raises(grpc.RpcError) as refused:
            get_nodes(b"", metadata=[("authorization", f"Bearer {token}")] if token else [], timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    get_nodes(b"", metadata=[("authorization", f"Bearer {environ['RAY_AUTH_TOKEN']}")], timeout=30)


@pytest.mark.timeout(900)
def test_killed_worker_and_ctrl_c_resume_to_identical_samples(tmp_path):
    """The private Ray instance listens on loopback only and demands its token; a worker SIGKILLed
    mid-training is retried from its checkpoint, with the plug-in the job shipped (its file is gone);
    Ctrl-C mid-grid stops `bench run` cleanly (exit 130); the same command finishes the grid without
    retraining; a NaN variant is FAILED (not retried); samples equal those of uninterrupted runs."""
    plugin = tmp_path / "plugins" / "offset_noise.py"
    plugin.parent.mkdir()
    plugin.write_text(readme_plugin_source())  # a plug-in method: Ray workers must register it too
    methods = ["baseline", "drift", "offset-noise:strength=0.2", "drift:delta=1e30"]
    config = write_suite(tmp_path / "bench.toml", suite={"name": "grid", "methods": methods, "seeds": 1},
                         train={"steps": 120, "checkpoint_every": 4}, metrics={"names": ["ssim"]},
                         execution={"device": "cpu"})
    command = [*BENCH, "run", "--config", str(config), "--results", str(tmp_path / "results"), "--plugin", str(plugin)]
    root = tmp_path / "results" / "grid"

    first = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True, preexec_fn=_ctrl_c_reaches_it)
    try:
        def running_past_checkpoint():
            return next(((d, r) for d, r in progress_records(root)
                         if r["state"] == "running" and r["node"] and r["step"] >= 6), None)
        killed_dir, record = wait_for(running_past_checkpoint, 300, "a training past its first checkpoint", first)
        assert record["pid"] != first.pid  # a Ray worker, not the driver
        check_private_instance(first.pid)
        plugin.unlink()  # the job holds its copy: the worker that retries the killed task must use it
        os.kill(record["pid"], signal.SIGKILL)

        def one_done_one_training():
            # the other run still far from its end, so Ctrl-C lands mid-grid however fast this machine is
            records = list(progress_records(root))
            finished = {d for d, _ in records if (d / DONE).exists()}
            return finished and any(not (d / DONE).exists() and not (d / FAILED).exists()
                                    and r["state"] == "running" and r["step"] <= 60 for d, r in records)
        wait_for(one_done_one_training, 300, "one run finished while another trains", first)
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, err[-3000:]
    assert "interrupted" in err and "run the same command again" in " ".join(err.split()) and "Traceback" not in err
    finished = sorted(p.parent for p in root.glob(f"runs/*/*/train-seed=*/*/{DONE}"))
    unfinished = sorted(d for d in {p.parent for p in root.glob("runs/*/*/train-seed=*/*/config.json")}
                        if not (d / DONE).exists() and not (d / FAILED).exists())
    assert unfinished  # Ctrl-C landed mid-grid
    failures = [line for line in err.splitlines() if line.startswith("failed ")]
    assert all("drift:delta=1e+30" in line for line in failures), failures  # the retry found the shipped plug-in
    stamps = {d: (d / DONE).stat().st_mtime_ns for d in finished}

    plugin.write_text(readme_plugin_source())
    again = subprocess.run(command, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stderr[-3000:]  # the NaN variant failed, everything else finished
    assert re.search(r"1 failed:\s+drift:delta=1e\+30 \(train seed 0\): loss became nan", again.stdout)
    assert "Traceback" not in again.stderr
    assert {d: (d / DONE).stat().st_mtime_ns for d in finished} == stamps  # nothing retrained
    runs = sorted(p.parent for p in root.glob(f"runs/*/*/train-seed=*/*/{DONE}"))
    assert len(runs) == 3 and len(list(root.glob("runs/**/metrics.json"))) == 3
    assert counts(again.stdout)[0] == 3 - len(finished)
    assert (next(root.glob("runs/*/drift@delta=1e+30/*/*")) / FAILED).read_text().startswith("loss became nan")

    # Reference: the killed and the interrupted runs trained straight through, in this process.
    load_plugin(str(plugin))
    try:
        redo = sorted(d for d in {killed_dir, *unfinished} if (d / DONE).exists())  # not the diverging one
        variants = [json.loads((d / RUN_CONFIG_FILE).read_text())["method"] for d in redo]
        cfg = load_config(config, None, {"suite": {"name": "reference", "methods": variants},
                                         "execution": {"executor": "local"}})
        summary = run_suite(cfg, tmp_path / "results", make_console(file=open(os.devnull, "w")))
        assert not summary.failed and summary.trained == len(redo)
    finally:
        REGISTRY.pop("offset-noise", None)
    assert read_progress(killed_dir / PROGRESS_FILE)["from_step"] >= 4  # resumed, not restarted
    reference, resumed = samples(tmp_path / "results" / "reference"), samples(root)
    assert reference and reference.keys() <= resumed.keys()
    for key, images in reference.items():
        assert np.array_equal(images, resumed[key]), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return pids


def _kill_session(sid: int) -> None:
    """Every process of one session we started (a Ray node: its raylet, workers, agents)."""
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _start_node(args: list[str], env: dict) -> subprocess.Popen:
    # A killed node is declared dead after 3 missed 1 s health checks (default 5 x 3 s).
    env = {**env, "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    node = subprocess.Popen([*RAY, "start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                             "--block", "--disable-usage-stats"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in node.stdout:  # `--block` prints this once the node has joined
        if "Ray runtime started" in line:
            return node
    raise AssertionError(f"ray start {' '.join(args)} failed (exit {node.wait()})")


@pytest.mark.timeout(900)
def test_two_node_cluster_two_drivers_and_a_lost_node(tmp_path):
    """Two `bench run` processes on one store, one joining by --address, one by $RAY_ADDRESS, on a
    two-node loopback cluster secured with a token as the README says; the second node is killed mid-grid,
    once a training is under way. Both finish; every run and evaluation exists once, computed once; `ray list tasks` names
    each task after its work. (Built-in methods only: see the closing note of issue 15 on plug-ins here.)"""
    address = f"127.0.0.1:{(port := _free_port())}"
    temp_dir = Path(f"/tmp/rb{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    # Four trainings: the two drivers' duplicate tasks hold CPUs while they wait on a lock, so with fewer
    # distinct trainings the second node can get only waiting duplicates and never train.
    methods = ["baseline", "drift", "drift:delta=0.1", "drift:delta=-0.1"]
    config = write_suite(tmp_path / "bench.toml", suite={"name": "cluster", "methods": methods, "seeds": 1},
                         train={"steps": (steps := 40), "checkpoint_every": 5}, metrics={"names": ["acc[expert]", "ssim"]},
                         execution={"device": "cpu"})
    command = [*BENCH, "run", "--config", str(config), "--results", str(tmp_path / "results")]
    cluster_env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    root = tmp_path / "results" / "cluster"
    nodes, drivers = [], []
    try:
        nodes.append(_start_node(["--head", "--port", str(port), "--dashboard-port", str(_free_port()),
                                  "--temp-dir", str(temp_dir)], cluster_env))  # the dashboard serves `ray list`
        nodes.append(_start_node(["--address", address], cluster_env))
        second = nodes[1].pid  # its session id: every process of that node carries it
        drivers = [subprocess.Popen(command + ["--address", address], env=cluster_env, cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                   subprocess.Popen(command, env={**cluster_env, "RAY_ADDRESS": address}, cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        seen_sessions = set()

        def a_training_under_way():
            # Which node trains first is Ray's choice (the drivers' lock-waiting duplicates hold CPUs too):
            # node 2 is killed mid-grid either way, and whatever it held is retried on the head.
            under_way = False
            for path in root.glob(f"**/*{PROGRESS_FILE}"):  # trainings, evaluations, the expert
                record = read_progress(path)
                if record and record["state"] == "running":
                    try:
                        seen_sessions.add(os.getsid(record["pid"]))
                    except OSError:  # finished meanwhile
                        continue
                    under_way |= record["total"] is not None and record["step"] >= 3
            return under_way
        wait_for(a_training_under_way, 400, "a training under way", drivers[0])
        _kill_session(second)
        outputs = [d.communicate(timeout=600) for d in drivers]
        listed = subprocess.run([*RAY, "list", "tasks", "--address", address, "--format", "json", "--limit", "10000"],
                                env=cluster_env, capture_output=True, text=True, timeout=120)
    finally:
        for proc in drivers:
            if proc.poll() is None:
                proc.kill()
        for node in nodes:  # ours, by session: unlike `ray stop`, leaves other Ray instances alone
            _kill_session(node.pid)
            node.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
    for proc, (out, err) in zip(drivers, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err and f"Ray cluster at {address}" in err
    assert seen_sessions <= {nodes[0].pid, second}  # and only there: no driver started Ray of its own
    names = {task["name"] for task in json.loads(listed.stdout)}
    assert {"expert", "train baseline seed 0", "train drift seed 0", "eval baseline seed 0 gen 0",
            "eval drift seed 0 gen 0"} <= names and "run_task" not in names, listed.stderr[-2000:]
    trained, evaluated = zip(*(counts(out) for out, _ in outputs))
    assert sum(trained) == len(methods) and sum(evaluated) == len(methods)  # each by exactly one of the two
    runs = sorted(p.parent for p in root.glob(f"runs/*/*/train-seed=*/*/{DONE}"))
    assert len(runs) == len(methods) and not list(root.glob(f"runs/**/{FAILED}"))
    for run in runs:
        assert len((run / LOG_FILE).read_text().splitlines()) == steps  # log_every = 1
        metrics = json.loads((run / "eval" / "seed=0" / METRICS_FILE).read_text())
        assert {"acc[expert]", "ssim"} <= set(metrics["metrics"])
    assert len(list((root / "cache").glob("expert-*/classifier.json"))) == 1


def test_a_failed_expert_fails_only_what_needs_it(tmp_path, monkeypatch):
    def broken_expert(*args):
        raise RuntimeError("no expert today")
    monkeypatch.setattr("bench.engine.runner.prepare_classifier", broken_expert)
    cfg = load_config(None, "tiny", {"suite": {"methods": ["baseline", "aligned"], "seeds": 1},
                                     "metrics": {"names": ["acc[expert]"]},
                                     "execution": {"executor": "local", "device": "cpu"}})
    summary = run_suite(cfg, tmp_path, make_console(file=open(os.devnull, "w")))
    assert summary.trained == 1 and summary.evaluated == 0  # baseline trains without the expert
    assert summary.failed == [f"expert: RuntimeError: no expert today ({UNRECORDED})",
                              "aligned (train seed 0): the expert is unavailable (RuntimeError: no expert today)",
                              "baseline (train seed 0, gen seed 0): the expert is unavailable "
                              "(RuntimeError: no expert today)"]

    def missing_weights(*args):
        raise BenchError("expert weights not found; pass --expert-weights")
    monkeypatch.setattr("bench.engine.runner.prepare_classifier", missing_weights)
    with pytest.raises(BenchError, match="expert weights not found"):  # bad input stops the run: exit 2
        run_suite(cfg, tmp_path / "again", make_console(file=open(os.devnull, "w")))


def test_progress_view_counts_and_shows_only_this_invocation(tmp_path):
    ours, theirs = tmp_path / "a" / PROGRESS_FILE, tmp_path / "b" / PROGRESS_FILE
    writer = ProgressWriter(ours, token="mine", every_s=0)
    writer.start()
    writer.step(12, 40)
    ProgressWriter(theirs, token="other").start()  # an earlier or concurrent invocation's file
    view = GridView(token="mine")
    view.submitted("h1", "train", "baseline (train seed 0)", ours)
    view.submitted("h2", "train", "drift (train seed 0)", theirs)
    view.submitted("h3", "eval", "baseline (train seed 0, gen seed 0)", tmp_path / "c" / PROGRESS_FILE)
    view.count("train", done=2)
    console = make_console(record=True, width=150, file=open(os.devnull, "w"))
    console.print(view)
    text = console.export_text()
    assert re.search(r"train\s+1\s+1\s+2\s+0", text) and re.search(r"eval\s+1\s+0\s+0\s+0", text)
    assert "baseline (train seed 0)" in text and "step 12/40" in text and "drift" not in text
    view.finished("h1", ok=False)
    writer.finish("failed")
    console.print(view)
    assert re.search(r"train\s+1\s+0\s+2\s+1", console.export_text())


class _FakeRay:
    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources

    def shutdown(self):
        pass


@pytest.mark.parametrize("execution, resources, fragment", [
    ({"num_gpus": 1}, {"CPU": 8}, "has 0 GPUs"),
    ({"num_cpus": 4}, {"CPU": 2}, "has 2 CPUs"),
    ({"device": "cuda", "num_gpus": 0}, {"CPU": 8, "GPU": 2}, "needs execution.num_gpus > 0"),
    ({"device": "cuda"}, {"CPU": 8}, "has no GPUs"),               # num_gpus "auto" on a CPU cluster
])
def test_ray_executor_refuses_resources_the_cluster_lacks(execution, resources, fragment):
    executor = RayExecutor.__new__(RayExecutor)
    executor.cfg, executor.ray, executor._owns_ray = ExecutionConfig(**execution), _FakeRay(resources), False
    executor._undo_private_settings = None
    with pytest.raises(BenchError, match=fragment):
        executor._check_resources()


def test_gpus_go_to_every_task_that_runs_a_network():
    executor = RayExecutor.__new__(RayExecutor)
    executor.cfg = ExecutionConfig(num_gpus=1, num_cpus=4, max_retries=2)
    executor.gpus = GpuShare(1.0, 0, 0, "execution.num_gpus")
    for kind in ("expert", "train", "eval"):
        assert executor._options(kind) == {"num_cpus": 4, "num_gpus": 1, "max_retries": 2, "retry_exceptions": False}
    assert executor._options("noop")["num_gpus"] == 0


def test_ray_address_comes_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # what `ray job submit` gives its entrypoint
    assert [ray_address(ExecutionConfig(address="auto")), ray_address(ExecutionConfig())] == ["auto", "10.0.0.1:6379"]
    monkeypatch.delenv("RAY_ADDRESS")
    assert ray_address(ExecutionConfig()) == ""  # a private instance
