"""ONNX Runtime's decoder graphs on fixate-rt's own causal attention kernel.

An exported decoder stays standard ONNX: every layer is an opset-23 ``Attention`` node whose boolean mask
[B, 1, T, T] the graph builds as "key j ≤ query i and attention_mask[b, j]". ONNX Runtime's CPU kernels for that
node build the T × T scores per head and run 2–3.5× slower than PyTorch's SDPA (benchmarks/ort_attention_kernels.py).
When a CPU session is created, `fuse_causal_attention` rewrites such a graph in memory: each of those nodes becomes
``fixate_rt.CausalAttention(Q, K, V, attention_mask)`` (the C++ kernel of ``libfixate_ort_ops``, built with the
package; csrc/causal_attention.cpp), and the graph's mask subgraph, now unused, is dropped — nothing of size T × T
remains. The folder on disk is never changed, so any ONNX runtime can still run it as exported.

Each fused node also returns the log-sum-exp of its queries' scaled scores [B, Hq, T]. When the graph's probe output
``probe_q`` stacks the queries of fused nodes (as the exporter writes it), the rewrite stacks those nodes'
log-sum-exps into one more graph output, ``probe_lse`` [B, L, Hq, T]: the rollout row then skips its own pass over
the scores (on the tiny Qwen3-VL decoder, batch 8: 5.3 ms per batch instead of 12.3).

The rewrite is all-or-nothing: it happens only when every ``Attention`` node has that one shape (4 inputs, the same
mask for all, no causal flag, softcap or extra outputs) and the mask depends on the graph input
``attention_mask``; otherwise the graph runs as exported. A graph so rewritten also has its ``RMSNormalization``
nodes run on ``fixate_rt.RMSNorm`` (`fuse_rms_norm`; same library). ``FIXATE_RT_ORT_ATTENTION=onnxruntime``
turns both off (for A/B measurements).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN = "fixate_rt"
OP = "CausalAttention"
LIBRARY = "libfixate_ort_ops.so"
SWITCH = "FIXATE_RT_ORT_ATTENTION"  # "onnxruntime": keep ONNX Runtime's Attention kernels
THREADS = "FIXATE_RT_ORT_OPS_THREADS"  # "openmp": the ops run on OpenMP instead of the session's intra-op pool
ORT_KERNEL = "onnxruntime Attention"  # run.json's name for ONNX Runtime's own kernels
PROBE_LSE = "probe_lse"  # the extra graph output of a rewritten decoder


def library_path() -> Path | None:
    """The built custom-op library (next to the package's C++ module), or None when the C++ build is absent."""
    import fixate_rt

    for folder in map(Path, fixate_rt.__path__):
        if (folder / LIBRARY).is_file():
            return folder / LIBRARY
    try:
        from fixate_rt import _C  # type: ignore[attr-defined]
    except ImportError:
        return None
    candidate = Path(_C.__file__).parent / LIBRARY
    return candidate if candidate.is_file() else None


def wanted() -> bool:
    """Whether CPU sessions should use the fused kernel (the library is built and not switched off)."""
    return os.environ.get(SWITCH, "").lower() != "onnxruntime" and library_path() is not None


def ops_on_openmp() -> bool:
    """Whether the library's ops run on their own OpenMP team (``FIXATE_RT_ORT_OPS_THREADS=openmp``, read when a
    session loads the library) instead of the session's intra-op pool (ONNX Runtime's ``KernelContext_ParallelFor``).

    The pool is the default: OpenMP's threads (spinning after each kernel) and ONNX Runtime's took each other's
    cores (tiny Qwen3-VL decoder inside `simulate`, batch 8, 2 threads: 65.9 ms per call on OpenMP, 45.9 on the
    pool). On OpenMP the session never spins between nodes."""
    return os.environ.get(THREADS, "") == "openmp"


def kernel_name() -> str:
    """What runs the decoder's attention on CPU, as run.json records it."""
    if not wanted():
        return ORT_KERNEL
    from fixate_rt import _C  # type: ignore[attr-defined]

    return f"fixate_rt.CausalAttention ({_C.causal_attention_variant()})"


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _depends_on(graph, tensor: str, source: str) -> bool:
    """Whether ``tensor`` is computed from the graph input ``source``."""
    producer = {out: node for node in graph.node for out in node.output}
    seen, todo = set(), [tensor]
    while todo:
        name = todo.pop()
        if name == source:
            return True
        if name in seen or name not in producer:
            continue
        seen.add(name)
        todo.extend(producer[name].input)
    return False


def fuse_causal_attention(model) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place) as the module docstring says; returns the number
    of ``Attention`` nodes replaced (0: the graph is left exactly as it was)."""
    import onnx

    graph = model.graph
    nodes = [node for node in graph.node if node.op_type == "Attention" and node.domain in ("", "ai.onnx")]
    if not nodes or "attention_mask" not in {i.name for i in graph.input}:
        return 0
    masks = {node.input[3] if len(node.input) > 3 else "" for node in nodes}
    for node in nodes:
        attrs = _attributes(node)
        if (len(node.input) != 4 or any(node.output[1:]) or attrs.get("is_causal", 0) != 0
                or attrs.get("softcap", 0.0) != 0.0 or attrs.get("qk_matmul_output_mode", 0) != 0
                or "q_num_heads" in attrs or "kv_num_heads" in attrs or not attrs.get("scale", 0.0) > 0.0):
            return 0
    if len(masks) != 1 or not _depends_on(graph, next(iter(masks)), "attention_mask"):
        return 0
    for node in nodes:
        fused = onnx.helper.make_node(OP, [*node.input[:3], "attention_mask"], [node.output[0], f"{node.name}/lse"],
                                      name=node.name, domain=DOMAIN, scale=float(_attributes(node)["scale"]))
        node.CopyFrom(fused)
    _expose_probe_lse(graph, nodes)
    _drop_unused(graph)
    if not any(op.domain == DOMAIN for op in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return len(nodes)


def custom_ops(model) -> list[str]:
    """fixate-rt's ops in ``model`` (an ``onnx.ModelProto``), as run.json names them: ``["fixate_rt.RMSNorm", ...]``."""
    return sorted({f"{node.domain}.{node.op_type}" for node in model.graph.node if node.domain == DOMAIN})


def fuse_rms_norm(model) -> int:
    """Replace the ``RMSNormalization`` nodes over the last axis (fp32 maths, 2 inputs) of ``model`` (changed in
    place) with ``fixate_rt.RMSNorm``: ONNX Runtime's kernel runs the decoders' per-head query/key norms (rows of
    16) about 3× slower on two threads than on one (tiny Qwen3-VL decoder: 8.7 ms of its 54 ms per batch). All or
    nothing; returns the number of nodes replaced."""
    import onnx

    nodes = [node for node in model.graph.node if node.op_type == "RMSNormalization" and node.domain in ("", "ai.onnx")]
    for node in nodes:
        attrs = _attributes(node)
        if (len(node.input) != 2 or len(node.output) != 1 or attrs.get("axis", -1) != -1
                or attrs.get("stash_type", 1) != 1):
            return 0
    for node in nodes:
        epsilon = float(_attributes(node).get("epsilon", 1e-5))  # ONNX's default
        node.CopyFrom(onnx.helper.make_node("RMSNorm", list(node.input), list(node.output), name=node.name,
                                            domain=DOMAIN, epsilon=epsilon))
    return len(nodes)


def _expose_probe_lse(graph, fused: list) -> bool:
    """Add the graph output ``probe_lse`` [B, L, Hq, T]: the log-sum-exps of the fused nodes whose queries
    ``probe_q`` stacks, in its order. ``probe_q`` must be ``Concat(axis=1)`` of ``Unsqueeze(q_l, [1])`` with each q_l
    the query input of a fused node; otherwise nothing is added (the rollout row computes the log-sum-exp itself)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    producer = {out: node for node in graph.node for out in node.output}
    stack = producer.get("probe_q")
    if (stack is None or stack.op_type != "Concat" or _attributes(stack).get("axis") != 1
            or PROBE_LSE in {o.name for o in graph.output}):
        return False
    initializers = {t.name: t for t in graph.initializer}

    def is_axis_one(name: str) -> bool:  # an in-file constant [1] (weights lie in external data: never read here)
        if name in producer and producer[name].op_type == "Constant" and producer[name].attribute:
            tensor = producer[name].attribute[0].t
        elif name in initializers and initializers[name].data_location != onnx.TensorProto.EXTERNAL:
            tensor = initializers[name]
        else:
            return False
        return len(tensor.dims) <= 1 and numpy_helper.to_array(tensor).tolist() == [1]

    by_query = {node.input[0]: node for node in fused}
    sources = []
    for name in stack.input:
        unsqueeze = producer.get(name)
        if (unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or len(unsqueeze.input) != 2
                or not is_axis_one(unsqueeze.input[1]) or unsqueeze.input[0] not in by_query):
            return False
        sources.append(by_query[unsqueeze.input[0]].output[1])
    axes = f"{PROBE_LSE}/axes"
    graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axes))
    layers = [f"{source}/unsqueezed" for source in sources]
    graph.node.extend(onnx.helper.make_node("Unsqueeze", [source, axes], [layer], name=layer)
                      for source, layer in zip(sources, layers, strict=True))
    graph.node.append(onnx.helper.make_node("Concat", layers, [PROBE_LSE], name=PROBE_LSE, axis=1))
    graph.output.append(onnx.helper.make_tensor_value_info(PROBE_LSE, onnx.TensorProto.FLOAT,
                                                           ["B", len(layers), "Hq", "T"]))
    return True


def _drop_unused(graph) -> None:
    """Remove the nodes none of whose outputs reach a graph output (the mask subgraph, once nothing reads it)."""
    if any(a.g.node or a.graphs for node in graph.node for a in node.attribute):
        return  # a subgraph may read outer values its node does not list as inputs: keep everything
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(reversed(keep))
        used = [t for t in graph.initializer if t.name in needed]
        del graph.initializer[:]
        graph.initializer.extend(used)


def _config(options, key: str) -> str | None:
    """A session config entry of ``options``, None when unset (setting one twice makes ONNX Runtime warn)."""
    try:
        return options.get_session_config_entry(key)
    except Exception:  # noqa: BLE001 - onnxruntime raises its own error type for a missing key
        return None


def fused_session(path: Path, options, providers: list[str], model=None):
    """An ONNX Runtime session of the graph at ``path`` with its causal attention fused (CPU provider only), or
    None when it does not apply (no library, switched off, another provider, or the graph has no such nodes).
    ``model``: that graph already read (``onnx.ModelProto`` without external weights; rewritten in place)."""
    if providers != ["CPUExecutionProvider"] or not wanted():
        return None
    import onnx
    import onnxruntime as ort

    if model is None:
        model = onnx.load(str(path), load_external_data=False)
    if fuse_causal_attention(model) == 0:
        return None
    fuse_rms_norm(model)
    options.register_custom_ops_library(str(library_path()))
    if ops_on_openmp() and _config(options, "session.intra_op.allow_spinning") != "0":
        # ONNX Runtime's threads spinning between nodes would take the OpenMP team's cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The graph now comes from memory: its external weights are read from the folder it lies in.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(path.parent))
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - an older runtime may lack what the rewrite needs: run the graph as is
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        log.warning("%s: the fused causal attention could not be loaded (%s); ONNX Runtime's own kernels run it",
                    path, first)
        return None
