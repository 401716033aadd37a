"""Running an export folder: its manifest, and each graph file wrapped as a `GraphSession`.

Run-time only (the export-time conversion lives in ``fixate_rt.exporters``). Every format is wrapped with
ONNX Runtime's calling convention (named numpy inputs in, numpy outputs in order out), so the exported backend
is the same for all formats:
- ``onnx``: ONNX Runtime (CPU provider; CUDA when onnxruntime-gpu is installed);
- ``export``: ``torch.export`` ExportedPrograms (``.pt2``), run by PyTorch without the transformers model classes;
- ``torchscript``: ``torch.jit`` traces (``.pt``), legacy.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .. import threads
from ..checks import integer
from ..errors import InputError, UnavailableError, ValidationError
from ..limits import MAX_HIDDEN_SIZE, MAX_IMAGE_SIDE, MAX_LAYERS
from ..outputs import MARKER as OUTPUT_MARKER
from . import ort_attention
from .safe_load import (
    check_onnx_external_data,
    check_pt2_archive,
    member_path,
    sha256_file,
    verify_digest,
)
from .trust import CODE_FORMATS, UNSIGNED

FORMATS = ("onnx", "export", "torchscript")
SUFFIX = {"onnx": "onnx", "export": "pt2", "torchscript": "pt"}
BACKEND_NAMES = {"onnx": "onnx-runtime", "export": "torch.export", "torchscript": "torchscript (legacy)"}
MANIFEST = "manifest.json"
FORMAT = "fixate-rt/export/1"
# The decoder graph's probe outputs this version reads (exporters/graphs.py writes the same; kept here so that
# running an export needs nothing from the export-time package).
PROBE_CONTRACT = {"name": "qk", "version": 2}
PROBE_OUTPUTS = ("logits", "probe_q", "probe_k")  # the decoder graph's outputs under that contract


def onnx_status() -> str:
    """"" when onnx and onnxruntime import, else the reason and the fixing install command."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"ONNX extra missing ({exc}); pip install 'fixate-rt[onnx]'"
    return ""


class GraphSession:
    """A saved graph ready to run: ``run(feed) -> [outputs]`` with named numpy inputs."""

    def __init__(self, fmt: str, path: Path, input_names: list[str], output_names: list[str],
                 providers: list[str] | None = None, *, listed: dict, authorised: bool = False,
                 one_thread: bool = False) -> None:
        """``listed``: the manifest's verified ``files`` (an ONNX graph's external data must be among them).
        ``authorised``: the folder passed `trust.authorise` (required for the formats that can carry code).
        ``one_thread``: ONNX Runtime runs the graph on the calling thread alone (no pool of its own)."""
        self.fmt, self.path = fmt, Path(path)
        self.custom_ops: list[str] = []  # ONNX on CPU: fixate-rt's ops the graph was rewritten to (ort_attention)
        self.input_names, self.output_names = list(input_names), list(output_names)
        if fmt in CODE_FORMATS and not authorised:
            raise InputError(f"{path}: format '{fmt}' can run code while loading and the folder was not authorised "
                             "(--trust-export or --verify-key)")
        if fmt == "export":
            check_pt2_archive(self.path)  # even when trusted: a plain exported program needs none of what it refuses
        elif fmt == "onnx":
            graph = check_onnx_external_data(self.path, self.path.parent, listed)
        try:
            if fmt == "onnx":
                import onnxruntime as ort

                providers = providers or ["CPUExecutionProvider"]
                threads = 1 if one_thread else None
                self._ort = ort_attention.fused_session(self.path, session_options(threads), providers, graph)
                if self._ort is not None:
                    self.custom_ops = ort_attention.custom_ops(graph)
                else:  # fresh options: a failed fused attempt may have changed the ones it was given
                    self._ort = ort.InferenceSession(str(path), session_options(threads), providers=providers)
                self.input_names = [i.name for i in self._ort.get_inputs()]
                self.output_names = [o.name for o in self._ort.get_outputs()]
            elif fmt == "export":
                # torch logs a warning per unbacked symbol it drops while loading; nothing for a user to act on
                logging.getLogger("torch._export.serde.serialize").setLevel(logging.ERROR)
                self._fn = attention_on_one_mask(without_metadata_asserts(torch.export.load(str(path)).module()))
            else:
                self._fn = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # each runtime raises its own types for corrupt files
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"{path}: {BACKEND_NAMES[fmt]} cannot load this graph ({first})") from None

    @property
    def fused_attention(self) -> bool:
        """Whether the decoder's attention runs on fixate_rt.CausalAttention."""
        return f"{ort_attention.DOMAIN}.{ort_attention.OP}" in self.custom_ops

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.fmt == "onnx":
            return self._ort.run(None, {k: v for k, v in feed.items() if k in self.input_names})
        args = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in self.input_names if name in feed]
        with torch.inference_mode():
            out = self._fn(*args)
        out = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def without_metadata_asserts(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` without its ``aten._assert_tensor_metadata`` nodes. torch.export records one per dtype
    conversion (77 in the tiny Qwen3-VL decoder, a tenth of its nodes); each only re-checks a dtype the program
    fixed when it was exported, yet costs a Python dispatch per call (about 6 % of the tiny decoder's time on
    CPU). The outputs are unchanged (tests/test_export.py compares them with the torch backend)."""
    graph = module.graph
    asserts = [node for node in graph.nodes if node.op == "call_function" and not node.users
               and node.target is torch.ops.aten._assert_tensor_metadata.default]
    for node in asserts:
        graph.erase_node(node)
    if asserts:
        graph.lint()
        module.recompile()
    return module


def _mask_forms(mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(key mask [B, T] when the boolean mask [B, 1, T, T] is exactly "causal and real key" and the C++ kernel is
    built, else None; otherwise the additive float mask SDPA would make of it: 0 where attended, -inf elsewhere)."""
    from .. import ops
    from ..probes.capture import causal_key_mask

    if ops.cpp_available() and dtype == torch.float32 and not torch.is_grad_enabled():
        key_ok = causal_key_mask(mask, mask.shape[-1], None)
        if key_ok is not None:
            return key_ok, None
    return None, torch.where(mask.logical_not(), -torch.inf, 0.0).to(dtype)


def _attention(query, key, value, forms, scale):
    """SDPA over one layer [B, H, T, d]: fixate-rt's C++ causal kernel when `_mask_forms` found the decoders'
    mask, else torch's SDPA with the additive mask."""
    key_ok, additive = forms
    if key_ok is not None:
        from .. import ops

        return ops.causal_attention_cpp(query, key, value, key_ok, scale)[0]
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=additive, scale=scale)


def attention_on_one_mask(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` with its SDPA calls that share a boolean mask [B, 1, T, T] rewritten: the mask is looked at once,
    before the first call (`_mask_forms`), and each layer then runs `_attention`.

    SDPA converted that mask to a float one itself on every call: one T × T ``where`` per layer, a tenth of the
    tiny Qwen3-VL decoder's time on CPU; and its masked flash kernel is slower than fixate-rt's causal kernel, which
    reads the key mask [B, T] as it is (tiny decoder, batch 8: 49 ms per batch instead of 63). Outputs are
    unchanged at every real position (tests/test_export.py compares them with the torch backend); a query with no
    real key gets zeros from the kernel."""
    graph, forms = module.graph, {}
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not sdpa or len(node.args) != 4 or set(node.kwargs) - {"scale"}:
            continue
        mask, query = node.args[3], node.args[0]
        values = [getattr(n, "meta", {}).get("val") for n in (mask, query)]
        if not isinstance(mask, torch.fx.Node) or values[0] is None or values[0].dtype != torch.bool or values[1] is None:
            continue
        if mask not in forms:
            with graph.inserting_after(mask):
                forms[mask] = graph.call_function(_mask_forms, (mask, values[1].dtype))
        scale = node.kwargs.get("scale", values[1].shape[-1] ** -0.5)
        node.target, node.args, node.kwargs = _attention, (*node.args[:3], forms[mask], scale), {}
    if forms:
        graph.lint()
        module.recompile()
    return module


def session_options(threads: int | None = None):
    """ONNX Runtime's session options as its performance guide recommends for CPU inference: every graph
    optimisation (operator fusion, constant folding, layout), intra-op threads = the CPUs this process may use
    (affinity and cgroup quota, or --threads), sequential execution (the graphs are one chain), and idle threads
    that sleep instead of spinning unless OMP_WAIT_POLICY=ACTIVE. ``threads``: this many intra-op threads instead."""
    import onnxruntime as ort

    settings = _ort_settings()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or settings["intra_op_num_threads"]
    if not settings["allow_spinning"]:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _ort_settings() -> dict:
    """The session settings `session_options` applies, as run.json records them."""
    return {"graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "sequential",
            "intra_op_num_threads": threads.chosen(),
            # Spinning between nodes bought nothing end to end on an idle machine and cost a third on a shared one
            # (benchmarks/bench_contended.py --backend onnx: tiny export, per pair, idle 6.79 ms spinning vs 6.84
            # passive; one core busy 12.7 vs 8.3 ms): pool threads sleep unless the user asks for an active wait.
            "allow_spinning": os.environ.get(threads.WAIT_POLICY, "").upper() == "ACTIVE"}


def runtime_options(fmt: str) -> dict:
    """What run.json records about how the graphs run."""
    if fmt != "onnx":
        return {"runtime": BACKEND_NAMES[fmt], "torch_threads": torch.get_num_threads()}
    return {"runtime": BACKEND_NAMES[fmt], **_ort_settings()}


def choose_providers(fmt: str, device: str) -> list[str] | None:
    """ONNX Runtime providers for ``device``; the PyTorch formats run on the CPU in this version."""
    if fmt != "onnx":
        if device == "cuda":
            raise UnavailableError(f"--device cuda with --backend {fmt}: the exported PyTorch programs run on the CPU "
                                   f"in this version; use --backend torch or onnx on a GPU")
        return None
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise UnavailableError(f"--device cuda with --backend onnx needs onnxruntime-gpu's CUDAExecutionProvider; "
                               f"available providers: {', '.join(available)}")
    return ["CPUExecutionProvider"]


def read_manifest(folder: Path, *, verify_files: bool = True) -> dict:
    """The export folder's manifest, checked: every file it names lies inside the folder and matches its SHA-256.

    ``verify_files=False`` only parses (for a quick look at the runtime before any loading).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: not a fixate-rt export folder ({MANIFEST} missing; create one with "
                         f"`fixate-rt export`)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValidationError(f"{path}, field 'format': expected '{FORMAT}', got {found!r}")
    if manifest.get("runtime", "onnx") not in SUFFIX:
        raise ValidationError(f"{path}, field 'runtime': unknown {manifest.get('runtime')!r}")
    check_contract(manifest, path)
    check_shape(manifest, path)
    if not verify_files:
        return manifest
    digests = manifest.get("files")
    if not isinstance(digests, dict):
        raise ValidationError(f"{path}, field 'files': no SHA-256 list (exported by an older fixate-rt? re-export)")
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ValidationError(f"{path}, field 'graphs': missing or empty")
    named = [(f"graphs.{name}.file", g.get("file") if isinstance(g, dict) else None) for name, g in graphs.items()]
    named += [(f"files.{name}", name) for name in digests]
    for field, name in named:
        member = member_path(folder, name, path, field)
        if not member.is_file():
            raise InputError(f"{member}: listed in the manifest ({field}) but missing")
        verify_digest(member, digests.get(name), path, f"files.{name}")
    unlisted = [name for name in _payload_files(folder) if name not in digests]
    if unlisted:
        raise ValidationError(f"{folder}: '{unlisted[0]}' is not listed in the manifest's SHA-256 list; an export "
                              "folder holds only the files `fixate-rt export` wrote")
    return manifest


def check_contract(manifest: dict, path: Path) -> None:
    """The decoder's probe outputs are the contract this version reads (Q and K of the probed layers)."""
    probe = manifest.get("probe")
    if not isinstance(probe, dict) or probe.get("name") != PROBE_CONTRACT["name"] \
            or probe.get("version") != PROBE_CONTRACT["version"]:
        found = f"{probe.get('name')} v{probe.get('version')}" if isinstance(probe, dict) else "the in-graph rollout row"
        raise InputError(f"{path}: exported by another fixate-rt (its decoder returns {found}; this version reads "
                         f"probe contract {PROBE_CONTRACT['name']} v{PROBE_CONTRACT['version']}); re-export it with "
                         "`fixate-rt export`")
    scale = probe.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e3:
        raise ValidationError(f"{path}, field 'probe.scale': expected the attention scale (a positive number)")


def check_shape(manifest: dict, path: Path) -> None:
    """The sizes a manifest declares, bounded (fixate_rt.limits) before anything is allocated from them."""
    integer(manifest.get("hidden_size"), 1, MAX_HIDDEN_SIZE, f"{path}, field 'hidden_size'")
    layers = integer(manifest.get("num_layers"), 1, MAX_LAYERS, f"{path}, field 'num_layers'")
    probe_layers = manifest.get("probe_layers")
    if not isinstance(probe_layers, list) or not probe_layers:
        raise ValidationError(f"{path}, field 'probe_layers': expected a non-empty list of layer indices")
    for layer in probe_layers:
        integer(layer, 0, layers - 1, f"{path}, field 'probe_layers'")
    sizes = (manifest.get("vision") or {}).get("sizes", []) if isinstance(manifest.get("vision"), dict) else None
    if not isinstance(sizes, list):
        raise ValidationError(f"{path}, field 'vision.sizes': expected a list")
    for entry in sizes:
        size = entry.get("image_size") if isinstance(entry, dict) else None
        if not isinstance(size, list) or len(size) != 2:
            raise ValidationError(f"{path}, field 'vision.sizes': expected [width, height] per entry, got {size!r}")
        for side in size:
            integer(side, 28, MAX_IMAGE_SIDE, f"{path}, field 'vision.sizes.image_size'")


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of an export folder but the manifest, the signature and the output marker (what the
    manifest records: graphs, external data, tokenizer and processor files, the prompt bank)."""
    return {name: sha256_file(Path(folder) / name) for name in _payload_files(folder)}


def _payload_files(folder: Path) -> list[str]:
    """Every file (or link) of an export folder but the manifest, the signature, the lock and the output marker,
    as sorted relative POSIX names: what the manifest's SHA-256 list must cover exactly."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name not in (MANIFEST, *UNSIGNED, OUTPUT_MARKER))
