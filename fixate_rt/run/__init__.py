"""The run layer of `fixate-rt simulate`, the same for the local and the Ray engine.

- `layout`: the one output layout (``OUT/simulations/``, a Parquet dataset of bounded part files) and the one
  reader every command uses;
- `store`: which chunks of the pair list are done, written atomically, so either engine resumes either's run;
- `record`: the run's fingerprint and its run.json, one schema for both engines;
- `local`: `run_simulation`, the local engine (the Ray engine is `fixate_rt.distributed`).
"""
