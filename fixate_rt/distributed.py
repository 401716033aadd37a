"""Scale-out on Ray Data: the same simulation, one loaded `Simulator` per Ray actor.

``simulate_dataset`` maps a Ray Dataset of (pair, user_id, slate_id) rows to simulation rows. Pairs are sorted
by slate, so a worker batch holds few slates and each is vision-encoded once per batch (the local engine's key
saving). Clicks are seeded per (seed, user, slate, sample), so the rows equal the local engine's for any worker
count, batch size or partitioning. ``run_distributed`` is `fixate-rt simulate --engine ray`: every pending chunk
of the pair list in one Ray execution, written by Ray (``write_parquet``) into a staging folder and each chunk's
files moved into the run layout of `fixate_rt.run.layout` once checked, so the output, its run.json and
``--resume`` are those of the local engine (either engine resumes the other's run). Ray is an optional extra
(``pip install 'fixate-rt[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from .checks import integer
from .config import SimulateConfig
from .errors import InputError, UnavailableError, ValidationError
from .io import write_json
from .limits import MAX_WORKERS, RAY_CONNECT_TIMEOUT_S

FAULT_HOOK = "FIXATE_RT_TEST_ACTOR_EXIT_ONCE"  # tests: the first actor call that finds no marker file exits


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UnavailableError(f"--engine ray needs Ray Data ({exc}); pip install 'fixate-rt[ray]'") from None
    return ray


def localise(images: str) -> str:
    """A slates folder every worker can read: a local path as it is, or a filesystem URL pyarrow understands
    (``file://``, ``s3://``, ``gs://``, ``hdfs://``, ...) copied once into a local temporary folder."""
    if "://" not in images:
        return images
    import tempfile

    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(images)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{images}: cannot list this slates folder ({exc})") from None
    local = Path(tempfile.mkdtemp(prefix="fixate-rt-slates-"))
    for info in infos:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as src:
                (local / Path(info.path).name).write_bytes(src.read())
    return str(local)


class SimulateBatches:
    """The Ray actor: loads the model once, binds the slates (a path or URL every node can read), simulates
    batches. ``prompts`` is a bank already in Ray's object store (broadcast once by the driver) or a path."""

    def __init__(self, model: str, images: str, users: str | None = None, prompts=None,
                 samples: int = 1, seed: int = 0, batch_size: int = 8, device: str = "auto", probe: str = "rollout",
                 kernel: str = "auto", pool_mode: str = "auto", backend: str = "auto", trust_export: bool = False,
                 residual: float = 0.5, threads: int | None = None, template: str = "fixate-rt",
                 allow_template_mismatch: bool = False, verify_key: str | None = None) -> None:
        import torch

        from .simulate import Simulator

        if threads:  # as many intra-op threads as CPUs Ray gave this actor: actors must not oversubscribe cores
            torch.set_num_threads(threads)

        import ray

        if isinstance(prompts, ray.ObjectRef):  # the driver's one broadcast copy
            prompts = ray.get(prompts)
        bank = Path(prompts) if isinstance(prompts, str) else prompts
        self.sim = Simulator(model, prompts=bank, device=device, batch_size=batch_size,
                             probe=probe, kernel=kernel, pool_mode=pool_mode, backend=backend,
                             trust_export=trust_export, verify_key=verify_key, residual=residual, template=template,
                             allow_template_mismatch=allow_template_mismatch)
        self.sim.bind(slates=localise(images), users=users, samples=samples, seed=seed)
        self.fault_marker = os.environ.get(FAULT_HOOK)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fault_marker and not os.path.exists(self.fault_marker):
            Path(self.fault_marker).write_text(str(os.getpid()))
            os._exit(17)  # the actor process dies mid-job; Ray restarts it and retries this batch
        if "pair" in batch:  # in pair order, as the local engine takes a chunk: the same batches, the same rows
            order = np.argsort(np.asarray(batch["pair"]), kind="stable")
            batch = {name: np.asarray(values)[order] for name, values in batch.items()}
        return self.sim(batch)


def simulate_dataset(pairs, *, images: str | Path, model: str = "slates-qwen3vl", users: str | Path | None = None,
                     prompts=None, samples: int = 1, seed: int = 0, batch_size: int = 8,
                     rows_per_call: int | None = None, workers: int = 1, gpus_per_worker: float = 0.0,
                     cpus_per_worker: float | None = None, device: str = "auto", probe: str = "rollout",
                     kernel: str = "auto", pool_mode: str = "auto", backend: str = "auto",
                     trust_export: bool = False, runtime_env: dict | None = None, template: str = "fixate-rt",
                     allow_template_mismatch: bool = False, verify_key: str | Path | None = None,
                     chunk_pairs: int | None = None):
    """pairs: a Ray Dataset with ``pair`` (a global index), ``user_id``, ``slate_id`` -> a Dataset of simulation
    rows (the columns of simulations.parquet plus ``pair``; ``samples`` rows per pair).

    ``images``: a slates folder every node can read, as a path or a filesystem URL pyarrow understands.
    ``prompts``: a bank file or `SoftPromptBank`; it is loaded once here and broadcast through Ray's object store.

    ``cpus_per_worker`` defaults to 1 with a GPU, else 0.5: on small machines actors that each take a whole CPU
    starve Ray's read tasks. Actors that die are restarted and their batches retried (Ray Data's defaults:
    ``max_restarts=-1``, ``max_task_retries=-1``); the driver checks afterwards that no row is lost or doubled.

    ``chunk_pairs``: give each actor call one whole chunk of the run (pairs ``c·n .. c·n+n-1``), in pair order,
    exactly as the local engine simulates it — the batches, and so the rows, are then bit for bit the local
    engine's (`fixate-rt simulate --engine ray` does this). Without it, pairs are sorted by slate and cut into
    calls of ``rows_per_call`` rows.
    """
    ray = require_ray()
    missing = {"pair", "user_id", "slate_id"} - set(pairs.schema().names)
    if missing:
        raise ValidationError(f"pairs dataset: missing column(s) {sorted(missing)}")
    cpus = cpus_per_worker if cpus_per_worker is not None else (1.0 if gpus_per_worker else 0.5)
    if prompts is not None:
        from .prompts import SoftPromptBank

        bank = prompts if isinstance(prompts, SoftPromptBank) else SoftPromptBank.load(Path(prompts))
        prompts = ray.put(bank)  # one copy in the object store; every actor's constructor receives the bank
    kwargs = dict(model=str(model), images=str(images), users=str(users) if users else None,
                  prompts=prompts, samples=samples, seed=seed, batch_size=batch_size,
                  device=device, probe=probe, kernel=kernel, pool_mode=pool_mode, backend=backend,
                  trust_export=trust_export, threads=max(1, int(round(cpus))), template=template,
                  allow_template_mismatch=allow_template_mismatch, verify_key=str(verify_key) if verify_key else None)
    if chunk_pairs:
        def with_chunk(batch: pa.Table) -> pa.Table:
            return batch.append_column("chunk", pa.compute.divide(batch.column("pair"), chunk_pairs))

        return pairs.map_batches(with_chunk, batch_format="pyarrow").groupby("chunk").map_groups(
            SimulateBatches, fn_constructor_kwargs=kwargs, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus, num_gpus=gpus_per_worker or None,
            runtime_env=runtime_env)
    # Sorted by slate, then cut into enough blocks for every worker (without shuffling the order back).
    return pairs.sort("slate_id").repartition(max(2 * workers, 1), shuffle=False).map_batches(
        SimulateBatches, fn_constructor_kwargs=kwargs, batch_size=rows_per_call or max(8 * batch_size, 64),
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
        num_gpus=gpus_per_worker or None,
        runtime_env=runtime_env)  # Ray Data's actors restart, and retry their batch, by default


@contextlib.contextmanager
def ray_output(log_file: Path | None) -> Iterator[None]:
    """Ray's own output for the block — its INFO logs, progress lines, notices and the C++ core worker's lines, all
    written to file descriptor 2 — appended to ``log_file``; None leaves it on the terminal (``-v``). The user
    sees fixate-rt's lines, and Ray's are kept in the run folder (``OUT/ray-logs/ray.log``)."""
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    # Ray's Python loggers may hold a stream object that is not file descriptor 2 (an embedding application's,
    # a test runner's): they are pointed at the file too, for the block
    to_file = logging.FileHandler(log_file)
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    kept = [(lg.handlers[:], lg.propagate) for lg in loggers]
    try:
        for lg in loggers:
            lg.handlers, lg.propagate = [to_file], False
        with open(log_file, "ab") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        for lg, (handlers, propagate) in zip(loggers, kept):
            lg.handlers, lg.propagate = handlers, propagate
        to_file.close()


def ray_log_file(folder: Path) -> Path | None:
    """Where Ray's output goes: ``folder/ray.log``, or None (the terminal) when the CLI runs with ``-v``."""
    return None if logging.getLogger("fixate_rt").isEnabledFor(logging.DEBUG) else folder / "ray.log"


def connect(address: str | None, *, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` ("auto", "ray://host:port", host:port) or start a local one."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if address and address != "auto":  # fail fast: ray.init retries an unreachable or foreign address for minutes
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            reason = _not_grpc(host or "127.0.0.1", int(port), RAY_CONNECT_TIMEOUT_S)
        except ValueError:
            reason = f"'{port}' is not a port number"
        if reason:
            raise InputError(f"--address {address}: not a Ray cluster ({reason})")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"--address {address}: cannot connect to a Ray cluster ({first})") from None


def _not_grpc(host: str, port: int, timeout: float) -> str:
    """"" when ``host:port`` answers the HTTP/2 connection preface with a SETTINGS frame, as every gRPC server (a
    Ray head's GCS and Ray Client alike) does; else why not. Bounded by ``timeout`` seconds in all."""
    import socket

    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)) as conn:
            conn.settimeout(min(timeout, 10.0))
            conn.sendall(preface)
            header = conn.recv(9)
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    if len(header) < 9 or header[3] != 0x04:
        return "it does not speak gRPC (HTTP/2): wrong host or port?"
    return ""


def check_cluster(workers: int, gpus_per_worker: float) -> None:
    """The joined cluster can host ``workers`` actors of ``gpus_per_worker`` GPUs (else Ray waits forever)."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus_per_worker > 0 and gpus < gpus_per_worker:
        raise InputError(f"--gpus-per-worker {gpus_per_worker}: the Ray cluster has {gpus:g} GPUs; run without "
                         "--gpus-per-worker on a CPU cluster")
    if gpus_per_worker > 0 and workers * gpus_per_worker > gpus:
        raise InputError(f"--workers {workers} × --gpus-per-worker {gpus_per_worker} needs "
                         f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}")


def run_distributed(config: SimulateConfig, *, address: str | None = None, workers: int = 1,
                    gpus_per_worker: float = 0.0, cpus_per_worker: float | None = None,
                    rows_per_call: int | None = None,
                    on_start: Callable[[int], None] | None = None,
                    on_pairs: Callable[[int], None] | None = None) -> dict:
    """`fixate-rt simulate --engine ray`: validate as the local engine does, then compute every pending chunk in
    one Ray execution and write the local engine's layout (`fixate_rt.run.layout`) and run.json schema."""
    from .digests import run_digests
    from .outputs import check_output, owned_output
    from .run.layout import RUN_RECORD
    from .run.preflight import preflight, run_inputs
    from .run.record import RunClock, fingerprint, run_record
    from .run.store import ChunkStore
    from .versions import versions

    clock = RunClock()
    require_ray()
    integer(workers, 1, MAX_WORKERS, "--workers")
    if not (math.isfinite(gpus_per_worker) and 0 <= gpus_per_worker <= 64):
        raise ValidationError(f"--gpus-per-worker must be in 0..64, got {gpus_per_worker}")
    checked = preflight(config)  # the bank is loaded and checked once; that object is broadcast to the workers
    data, info = checked.data, checked.info
    pairs = data.all_pairs()
    check_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite, resume=config.resume)
    clock.mark("read_inputs")
    # before anything is written: a refused connection leaves no folder behind (Ray's start-up lines go to a
    # temporary log, moved into the run folder below, or named in the error)
    startup = Path(tempfile.mkdtemp(prefix="fixate-rt-ray-")) / "ray-logs"
    try:
        with ray_output(ray_log_file(startup)):
            connect(address)
    except InputError as exc:
        raise InputError(f"{exc} (Ray's output: {startup / 'ray.log'})") from None
    check_cluster(workers, gpus_per_worker)
    clock.mark("connect")
    with owned_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite,
                      resume=config.resume) as out:  # locked: one run per --out
        info.announce_weights()  # notes only once nothing can refuse the run: an error stays one line
        digests = run_digests(info.folder(), data.users, data.slates, pairs, checked.bank_source)
        store = ChunkStore(out, fingerprint(config, info.kind.value, digests, len(pairs)), resume=config.resume)
        logs = out / "ray-logs"
        if (startup / "ray.log").is_file():
            logs.mkdir(exist_ok=True)
            with open(logs / "ray.log", "ab") as sink:
                sink.write((startup / "ray.log").read_bytes())
        shutil.rmtree(startup.parent, ignore_errors=True)
        import ray

        if on_start is not None:
            on_start(len(pairs))
        pending = store.pending
        resumed = store.done_pairs()
        clock.mark("prepare_output")
        if pending:  # one Ray execution for every missing chunk: the actors load the model once
            logging.getLogger("fixate_rt").info(
                f"simulating {sum(len(store.chunks[i]) for i in pending)} pairs ({len(pending)} chunks) on {workers} Ray "
                f"worker(s); Ray's own log: {logs / 'ray.log'}")
            index = [j for i in pending for j in store.chunks[i]]
            table = pa.table({"pair": pa.array(index, pa.int64()), "user_id": [pairs[j][0] for j in index],
                              "slate_id": [pairs[j][1] for j in index]})
            result = simulate_dataset(
                ray.data.from_arrow(table), images=config.images, model=str(config.model), users=config.users,
                prompts=checked.bank, samples=config.samples, seed=config.seed, batch_size=config.batch_size,
                rows_per_call=rows_per_call, workers=workers, gpus_per_worker=gpus_per_worker,
                cpus_per_worker=cpus_per_worker, device=config.device, probe=config.probe.value,
                kernel=config.kernel.value, pool_mode=config.pool_mode.value, backend=info.kind.value,
                trust_export=config.trust_export, verify_key=config.verify_key, template=config.template.value,
                allow_template_mismatch=config.allow_template_mismatch, chunk_pairs=store.chunk_pairs)
            shard = store.chunk_pairs
            result = result.map_batches(lambda t: _with_chunk(t, shard), batch_format="pyarrow")
            with ray_output(ray_log_file(logs)):
                result.write_parquet(str(store.staging), partition_cols=["chunk"])
            for i in pending:  # checked, then renamed into place chunk by chunk
                store.adopt_staged(i, sorted((store.staging / f"chunk={i}").glob("*.parquet")))
            shutil.rmtree(store.staging, ignore_errors=True)
        if on_pairs is not None:
            on_pairs(len(pairs))
        run_s = clock.mark("simulate")
        cpus = cpus_per_worker if cpus_per_worker is not None else (1.0 if gpus_per_worker else 0.5)
        execution = {
            "model_weights": info.weights, "device": f"ray workers ({config.device})", "backend": info.kind.value,
            # the driver never loads the model: what only a loaded model knows is null here
            "backbone": {"name": info.backbone, "family": None, "hidden_size": info.hidden_size, "num_layers": None,
                         "probe_layers": None},
            "probe": config.probe.value, "template": config.template.value,
            "implementations": {"per_worker": "decided by each worker's plan (see a local run's run.json)"},
            "threads": {"per_worker": max(1, int(round(cpus)))}, "export_trust": checked.authorised_by,
            "export_runtime": None, "quantization": (info.manifest or {}).get("quantization"),
            "ray": {"version": ray.__version__, "address": address or "local", "workers": workers,
                    "gpus_per_worker": gpus_per_worker, "cpus_per_worker": cpus,
                    "cluster_resources": ray.cluster_resources()},
        }
        payload = run_record(config, engine="ray", clock=clock, digests=digests, versions=versions(),
                             execution=execution, store=store, slates=data.slates, resumed=resumed, run_s=run_s)
        write_json(out / RUN_RECORD, payload)
        return payload


def _with_chunk(table: pa.Table, shard: int) -> pa.Table:
    """The rows in the part schema (`conform`), plus the chunk they belong to (Ray partitions the write by it)."""
    from .run.layout import conform

    table = conform(table)
    return table.append_column("chunk", pa.array(table.column("pair").to_numpy() // shard, pa.int64()))
