"""`fixate-rt simulate` on this machine: `run_simulation`. Chunk after chunk of the pair list is simulated and
written as one part file (`fixate_rt.run.store`); run.json is written last (`fixate_rt.run.record`)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import BackendKind, SimulateConfig
from ..digests import run_digests
from ..io import write_json
from ..locking import interruptible
from ..outputs import check_output, owned_output
from ..threads import AdaptiveThreads, apply_threads
from ..versions import versions
from .layout import RUN_RECORD
from .preflight import preflight, run_inputs
from .record import RunClock, fingerprint, run_record
from .store import ChunkStore


def run_simulation(config: SimulateConfig, *, on_pairs: Callable[[int], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> dict:
    """Validate inputs, simulate every pending chunk, write ``OUT/simulations/`` and ``OUT/run.json``.
    Returns run.json's content."""
    from ..simulate import Simulator

    clock = RunClock()
    checked = preflight(config)
    data = checked.data
    pairs = data.all_pairs()
    check_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite, resume=config.resume)
    thread_info = apply_threads(config.threads)
    clock.mark("read_inputs")
    sim = Simulator.from_config(config, checked)  # loaded before --out is created: a model that fails leaves nothing
    clock.mark("load_model")
    if config.threads is None and thread_info["threads"] > 1 and sim.backend.kind is BackendKind.torch:
        # no static count is best on both an idle and a shared machine: measure, batch by batch (threads.py)
        sim.thread_controller = AdaptiveThreads(thread_info["threads"])
    with owned_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite,
                      resume=config.resume) as out:  # locked: one run per --out, parts never interleaved
        checked.info.announce_weights()  # notes only once nothing can refuse the run: an error stays one line
        digests = run_digests(checked.info.folder(), data.users, data.slates, pairs, checked.bank_source)
        store = ChunkStore(out, fingerprint(config, checked.info.kind.value, digests, len(pairs)),
                           resume=config.resume)
        resumed = store.done_pairs()
        if on_start is not None:
            on_start(len(pairs))
        if resumed and on_pairs is not None:
            on_pairs(resumed)

        def kept() -> str:
            return (f"{store.done_pairs()} of {len(pairs)} pairs are kept in {store.dir}; rerun the same command "
                    "with --resume to continue")

        clock.mark("prepare_output")
        with interruptible(kept):
            for chunk in store.pending:
                rows = sim.simulate_pairs(data.users, data.slates, pairs, store.chunks[chunk], samples=config.samples,
                                          seed=config.seed, on_pairs=on_pairs)
                with sim.timer.stage("write"):
                    store.write(chunk, rows)
        run_s = clock.mark("simulate")
        backend = sim.backend
        execution = {
            "model_weights": checked.info.weights, "device": backend.device_label(), "backend": backend.kind.value,
            "backbone": {"name": backend.name, "family": backend.family, "hidden_size": backend.hidden_size,
                         "num_layers": backend.num_layers, "probe_layers": list(sim.probe_layers)},
            "probe": sim.probe, "template": sim.template.value, "implementations": sim.plan.record(),
            "threads": {**thread_info, **({"adaptive": sim.thread_controller.summary()} if sim.thread_controller
                                           else {})}, "export_trust": checked.authorised_by,
            "export_runtime": getattr(backend, "runtime_options", None),
            "quantization": getattr(backend, "quantization", None), "ray": None,
        }
        info = run_record(config, engine="local", clock=clock, digests=digests, versions=versions(),
                          execution=execution, store=store, slates=data.slates, resumed=resumed, run_s=run_s,
                          timings=sim.timer.rounded())
        write_json(out / RUN_RECORD, info)
        return info
