"""Scale-out on Ray Data: the same simulation, one loaded `Simulator` per Ray actor.

``simulate_dataset`` maps a Ray Dataset of (pair, user_id, slate_id) rows to simulation rows. Pairs are sorted
by slate, so a worker batch holds few slates and each is vision-encoded once per batch (the local engine's key
saving). Clicks are seeded per (seed, user, slate, sample), so the rows equal the local engine's for any worker
count, batch size or partitioning. ``run_distributed`` is `fixate-rt simulate --engine ray`: the pairs in
chunks of ``--shard-pairs``, each chunk written by Ray (``write_parquet``) into its own folder under
``OUT/simulations/`` and renamed into place when complete, so an interrupted driver reruns with ``--resume`` and
computes only the missing chunks. Ray is an optional extra (``pip install 'fixate-rt[ray]'``), imported only here.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .checks import integer
from .config import SimulateConfig
from .errors import InputError, UnavailableError, ValidationError
from .io import write_json
from .limits import MAX_WORKERS, RAY_CONNECT_TIMEOUT_S
from .shards import check_fingerprint

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
        return self.sim(batch)


def simulate_dataset(pairs, *, images: str | Path, model: str = "tiny-qwen3vl", users: str | Path | None = None,
                     prompts=None, samples: int = 1, seed: int = 0, batch_size: int = 8,
                     rows_per_call: int | None = None, workers: int = 1, gpus_per_worker: float = 0.0,
                     cpus_per_worker: float | None = None, device: str = "auto", probe: str = "rollout",
                     kernel: str = "auto", pool_mode: str = "auto", backend: str = "auto",
                     trust_export: bool = False, runtime_env: dict | None = None, template: str = "fixate-rt",
                     allow_template_mismatch: bool = False, verify_key: str | Path | None = None):
    """pairs: a Ray Dataset with ``pair`` (a global index), ``user_id``, ``slate_id`` -> a Dataset of simulation
    rows (the columns of simulations.parquet plus ``pair``; ``samples`` rows per pair).

    ``images``: a slates folder every node can read, as a path or a filesystem URL pyarrow understands.
    ``prompts``: a bank file or `SoftPromptBank`; it is loaded once here and broadcast through Ray's object store.

    ``cpus_per_worker`` defaults to 1 with a GPU, else 0.5: on small machines actors that each take a whole CPU
    starve Ray's read tasks. Actors that die are restarted and their batches retried (Ray Data's defaults:
    ``max_restarts=-1``, ``max_task_retries=-1``); the driver checks afterwards that no row is lost or doubled.
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
    # Sorted by slate, then cut into enough blocks for every worker (without shuffling the order back).
    return pairs.sort("slate_id").repartition(max(2 * workers, 1), shuffle=False).map_batches(
        SimulateBatches, fn_constructor_kwargs=kwargs, batch_size=rows_per_call or max(8 * batch_size, 64),
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
        num_gpus=gpus_per_worker or None,
        runtime_env=runtime_env)  # Ray Data's actors restart, and retry their batch, by default


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


class ChunkStore:
    """``OUT/simulations/chunk=N/`` folders (Ray's partitioned Parquet), plus a manifest of the run.

    A chunk is done when its files hold every pair of the chunk exactly ``samples`` times; an interrupted run
    leaves some chunks incomplete (or a file cut short): ``--resume`` deletes those and recomputes them only.
    """

    def __init__(self, out: Path, fingerprint: dict, *, resume: bool) -> None:
        self.dir = out / "simulations"
        self.manifest_path = out / "ray-run.json"
        if self.manifest_path.exists():
            if not resume:
                raise InputError(f"{out}: an interrupted or finished Ray run is here; pass --resume to continue it "
                                 f"(or delete the folder to start over)")
            check_fingerprint(self.manifest_path, fingerprint, out)
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise InputError(f"{self.dir}: exists without {self.manifest_path.name}; not a fixate-rt Ray output")
        else:
            write_json(self.manifest_path, fingerprint)
        self.dir.mkdir(parents=True, exist_ok=True)

    def folder(self, index: int) -> Path:
        return self.dir / f"chunk={index}"

    def complete(self, index: int, chunk: range, samples: int) -> bool:
        folder = self.folder(index)
        if not folder.is_dir():
            return False
        try:
            _check_chunk(folder, chunk, samples)
            return True
        except (ValidationError, pa.ArrowInvalid, OSError):
            shutil.rmtree(folder, ignore_errors=True)  # incomplete: recomputed
            return False


def run_distributed(config: SimulateConfig, *, address: str | None = None, workers: int = 1,
                    gpus_per_worker: float = 0.0, cpus_per_worker: float | None = None,
                    rows_per_call: int | None = None,
                    on_start: Callable[[int], None] | None = None,
                    on_pairs: Callable[[int], None] | None = None) -> dict:
    """`fixate-rt simulate --engine ray`: validate as the local engine does, then simulate chunk by chunk."""
    from .digests import run_digests
    from .outputs import check_output, owned_output
    from .simulate import preflight, run_inputs, utc_now
    from .summary import SlotSummary
    from .versions import versions

    started, t0 = utc_now(), time.perf_counter()
    require_ray()
    integer(workers, 1, MAX_WORKERS, "--workers")
    if not (math.isfinite(gpus_per_worker) and 0 <= gpus_per_worker <= 64):
        raise ValidationError(f"--gpus-per-worker must be in 0..64, got {gpus_per_worker}")
    checked = preflight(config)  # the bank is loaded and checked once; that object is broadcast to the workers
    data, info, bank, prompts = checked.data, checked.info, checked.bank, checked.bank_source
    pairs = data.all_pairs()
    check_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite, resume=config.resume)
    connect(address)  # before anything is written: a refused connection leaves no folder behind
    check_cluster(workers, gpus_per_worker)
    with owned_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite,
                      resume=config.resume) as out:  # locked: one run per --out
        digests = run_digests(config.model, data.users, data.slates, pairs, prompts)
        fingerprint = {**{f"{k}_sha256": v for k, v in digests.items()}, "engine": "ray", "n_pairs": len(pairs),
                       "chunk_pairs": config.shard_pairs, "seed": config.seed, "samples": config.samples,
                       "probe": config.probe.value, "pool_mode": config.pool_mode.value, "backend": info.kind.value,
                       "template": config.template.value}
        store = ChunkStore(out, fingerprint, resume=config.resume)
        import ray

        chunks = [range(i, min(i + config.shard_pairs, len(pairs))) for i in range(0, len(pairs), config.shard_pairs)]
        if on_start is not None:
            on_start(len(pairs))
        pending = [i for i, chunk in enumerate(chunks) if not store.complete(i, chunk, config.samples)]
        resumed = len(pairs) - sum(len(chunks[i]) for i in pending)
        t_run = time.perf_counter()
        if pending:  # one Ray execution for every missing chunk: the actors load the model once
            index = [j for i in pending for j in chunks[i]]
            table = pa.table({"pair": pa.array(index, pa.int64()), "user_id": [pairs[j][0] for j in index],
                              "slate_id": [pairs[j][1] for j in index]})
            result = simulate_dataset(
                ray.data.from_arrow(table), images=config.images, model=str(config.model), users=config.users,
                prompts=bank, samples=config.samples, seed=config.seed, batch_size=config.batch_size,
                rows_per_call=rows_per_call, workers=workers, gpus_per_worker=gpus_per_worker,
                cpus_per_worker=cpus_per_worker, device=config.device, probe=config.probe.value,
                kernel=config.kernel.value, pool_mode=config.pool_mode.value, backend=info.kind.value,
                trust_export=config.trust_export, verify_key=config.verify_key, template=config.template.value,
                allow_template_mismatch=config.allow_template_mismatch)
            shard = config.shard_pairs
            result = result.map_batches(lambda t: _with_chunk(t, shard), batch_format="pyarrow")
            result.write_parquet(str(store.dir), partition_cols=["chunk"])
            for i in pending:  # the chunks kept were checked by `store.complete`
                _check_chunk(store.folder(i), chunks[i], config.samples)
        summary, rows, cold_rows = SlotSummary(data.slates), 0, 0
        for i in range(len(chunks)):
            written = pq.read_table(store.folder(i), columns=["slate_id", "click_slot", "p_click", "slot_relevance",
                                                              "cold_start"])
            summary.add(written)
            rows += written.num_rows
            cold_rows += int(np.sum(written.column("cold_start").to_numpy(zero_copy_only=False)))
        if on_pairs is not None:
            on_pairs(len(pairs))
        run_s = time.perf_counter() - t_run
        cold = cold_rows // config.samples
        payload = {
            "command": "simulate", "engine": "ray", "started_at": started, "finished_at": utc_now(),
            "config": config.to_json(), "digests_sha256": digests, "versions": versions(),
            "ray": {"version": ray.__version__, "address": address or "local", "workers": workers,
                    "gpus_per_worker": gpus_per_worker, "cluster_resources": ray.cluster_resources()},
            "device": f"ray workers ({config.device})", "backend": info.kind.value,
            "implementations": {"per_worker": "decided by each worker's plan (see a local run's run.json)"},
            "pairs": len(pairs), "resumed_pairs": resumed, "rows": rows, "cold_start_pairs": cold,
            "timings_s": {"total": round(time.perf_counter() - t0, 4), "run_total": round(run_s, 4)},
            "pairs_per_s": round((len(pairs) - resumed) / run_s, 3) if run_s > 0 else None,
            "summary": summary.result(),
            "outputs": {"simulations": str(store.dir), "note": "Parquet partitioned by chunk, with a 'pair' column: "
                                                              "sort by (pair, sample) for the local engine's row order"},
        }
        write_json(out / "run.json", payload)
        return payload


NULLABLE = ("click_item_id", "click_item_kind", "click_item_rank", "click_row", "click_col")


def _with_chunk(table: pa.Table, shard: int) -> pa.Table:
    """Add the chunk column, and give the nullable click metadata its simulations.parquet type: numpy batches
    turn an all-null column into float NaN, which would write ``click_item_id`` as a float column."""
    from .data.tables import SIMULATIONS_SCHEMA

    for name in NULLABLE:
        if name in table.column_names:
            kind = SIMULATIONS_SCHEMA.field(name).type
            col = table.column(name)
            if col.type != kind:
                values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in col.to_pylist()]
                if pa.types.is_integer(kind):
                    values = [None if v is None else int(v) for v in values]
                table = table.set_column(table.column_names.index(name), name, pa.array(values, kind))
    return table.append_column("chunk", pa.array(table.column("pair").to_numpy() // shard, pa.int64()))


def _check_chunk(folder: Path, chunk: range, samples: int) -> None:
    """Every pair of the chunk exactly ``samples`` times: nothing lost, nothing doubled (retries included)."""
    got = pq.read_table(folder, columns=["pair"]).column("pair").to_numpy()
    counts = np.bincount(got - chunk.start, minlength=len(chunk)) if got.size else np.zeros(len(chunk), int)
    if got.size and (got.min() < chunk.start or got.max() >= chunk.stop):
        raise ValidationError(f"{folder}: rows of pairs outside this chunk")
    if not (counts == samples).all():
        bad = int(np.flatnonzero(counts != samples)[0]) + chunk.start
        raise ValidationError(f"{folder}: pair {bad} has {counts[bad - chunk.start]} rows, expected {samples}")
