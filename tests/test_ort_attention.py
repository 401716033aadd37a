"""fixate-rt's causal attention kernel (C++) and its ONNX Runtime custom op: the kernel against torch's SDPA
(grouped heads, padding, odd sizes, both compiled variants), the C ABI slots against the installed runtime, and the
in-memory rewrite of an exported decoder (same outputs, no T x T mask left, all-or-nothing)."""

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixate_rt import ops

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'fixate-rt[onnx]'")
onnx = pytest.importorskip("onnx")
needs_cpp = pytest.mark.skipif(not ops.cpp_available(), reason="C++ module not built")
ROOT = Path(__file__).resolve().parents[1]


def _case(B, Hq, Hkv, T, D, seed=0):
    """Random q [B, Hq, T, D], k, v [B, Hkv, T, D] and a key mask [B, T] with left padding and a hole."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, T, D, generator=g) for h in (Hq, Hkv, Hkv))
    mask = torch.ones(B, T, dtype=torch.int64)
    if B > 1:
        mask[1, : T // 3] = 0  # left padding
    if B > 2 and T > 8:
        mask[2, T // 2: T // 2 + 3] = 0  # keys masked in the middle
    return q, k, v, mask


def _sdpa(q, k, v, mask, scale):
    """torch's SDPA with the decoders' mask: key j <= query i and mask[b, j]; rows with no key are NaN there."""
    groups = q.shape[1] // k.shape[1]
    T = q.shape[2]
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(groups, 1),
                                                           v.repeat_interleave(groups, 1), attn_mask=allowed,
                                                           scale=scale)
    return out, allowed.any(-1)  # [B, 1, T]: whether the query has a key


@needs_cpp
@pytest.mark.parametrize("shape", [(3, 4, 2, 37, 16), (3, 8, 4, 64, 64), (2, 3, 1, 21, 20), (1, 2, 2, 1, 8)],
                         ids=lambda s: "B{}-Hq{}-Hkv{}-T{}-D{}".format(*s))
def test_kernel_equals_sdpa(shape):
    from fixate_rt import _C

    q, k, v, mask = _case(*shape)
    scale = shape[-1] ** -0.5
    expected, has_key = _sdpa(q, k, v, mask, scale)
    out = torch.from_numpy(_C.causal_attention(q.numpy(), k.numpy(), v.numpy(), mask.numpy(), scale))
    assert out.shape == expected.shape and torch.isfinite(out).all()
    real = has_key[..., None].expand_as(out)
    torch.testing.assert_close(out[real], expected[real], atol=2e-6, rtol=1e-5)
    assert (out[~real] == 0).all()  # padded queries: zeros, not NaN


@needs_cpp
def test_kernel_without_mask_is_plain_causal():
    from fixate_rt import _C

    q, k, v, _ = _case(2, 4, 2, 50, 16, seed=1)
    out = _C.causal_attention(q.numpy(), k.numpy(), v.numpy(), None, 0.25)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                                is_causal=True, scale=0.25)
    torch.testing.assert_close(torch.from_numpy(out), expected, atol=2e-6, rtol=1e-5)


@needs_cpp
def test_kernel_rejects_bad_shapes():
    from fixate_rt import _C

    q, k, v, mask = _case(2, 3, 2, 10, 8)
    with pytest.raises(ValueError, match="multiple of Hkv"):
        _C.causal_attention(q.numpy(), k.numpy(), v.numpy(), mask.numpy(), 0.3)
    q, k, v, mask = _case(2, 4, 2, 10, 8)
    with pytest.raises(ValueError, match=r"attention_mask must be \[B, T\]"):
        _C.causal_attention(q.numpy(), k.numpy(), v.numpy(), mask[:, :5].numpy(), 0.3)


@needs_cpp
def test_both_compiled_variants_agree():
    code = ("import sys; sys.path.insert(0, %r); from test_ort_attention import _case; from fixate_rt import _C;"
            "q, k, v, m = _case(3, 4, 2, 45, 16, seed=3); out = _C.causal_attention(q.numpy(), k.numpy(), v.numpy(),"
            " m.numpy(), 0.25); print(_C.causal_attention_variant()); print(' '.join(map(repr, out.ravel().tolist())))")
    code = code % str(Path(__file__).parent)
    outs = {}
    for env in ({}, {"FIXATE_RT_CPU_PORTABLE": "1"}):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, **env}, check=True)
        variant, values = done.stdout.strip().splitlines()
        outs[variant] = np.array([float(x) for x in values.split()])
    assert "portable" in outs
    for variant, out in outs.items():
        np.testing.assert_allclose(out, outs["portable"], atol=1e-6, err_msg=variant)


def test_abi_slots_match_the_installed_runtime():
    """csrc/ort_abi.h names OrtApi slots by number; the installed ONNX Runtime's own table must agree on the ones
    that can be called harmlessly (status handling, domain creation)."""
    import onnxruntime

    header = (ROOT / "csrc" / "ort_abi.h").read_text()
    slots = {name: int(n) for name, n in re.findall(r"\bk(\w+) = (\d+),", header)}
    lib = next(Path(onnxruntime.__file__).parent.joinpath("capi").glob("libonnxruntime.so*"))
    ort = ctypes.CDLL(str(lib))
    ort.OrtGetApiBase.restype = ctypes.POINTER(ctypes.c_void_p * 2)
    get_api = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)(ort.OrtGetApiBase().contents[0])
    table = ctypes.cast(get_api(1), ctypes.POINTER(ctypes.c_void_p * 128)).contents

    def fn(name, restype, *argtypes):
        return ctypes.CFUNCTYPE(restype, *argtypes)(table[slots[name]])

    status = fn("CreateStatus", ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)(2, b"slot probe")
    assert fn("GetErrorCode", ctypes.c_int, ctypes.c_void_p)(status) == 2
    assert fn("GetErrorMessage", ctypes.c_char_p, ctypes.c_void_p)(status) == b"slot probe"
    fn("ReleaseStatus", None, ctypes.c_void_p)(status)
    domain = ctypes.c_void_p()
    create = fn("CreateCustomOpDomain", ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p))
    assert create(b"fixate_rt_probe", ctypes.byref(domain)) is None and domain.value


def _attention_graph(is_causal=0, probe_axis=None):
    """A one-layer graph of the exported decoders' shape: mask = causal & attention_mask, Attention-23.
    ``probe_axis``: also output ``probe_q`` = Concat(Unsqueeze(q, [probe_axis])) as the exporter stacks the probed
    layers' queries (axis 1)."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", h, "T", 8]) for n, h in
              (("q", 4), ("k", 2), ("v", 2))]
    inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"]))
    nodes = [
        helper.make_node("Shape", ["attention_mask"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["t"], axis=0),
        helper.make_node("Range", ["zero", "t", "one"], ["idx"]),
        helper.make_node("Unsqueeze", ["idx", "axis1"], ["rows"]),
        helper.make_node("Unsqueeze", ["idx", "axis0"], ["cols"]),
        helper.make_node("LessOrEqual", ["cols", "rows"], ["causal"]),  # [T, T]: key <= query
        helper.make_node("Cast", ["attention_mask"], ["keys"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["keys", "axes12"], ["keys4"]),  # [B, 1, 1, T]
        helper.make_node("And", ["causal", "keys4"], ["mask"]),  # [B, 1, T, T]
        helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], scale=0.35, is_causal=is_causal),
    ]
    inits = [helper.make_tensor("one", TensorProto.INT64, [], [1]), helper.make_tensor("zero", TensorProto.INT64, [], [0]),
             helper.make_tensor("axis1", TensorProto.INT64, [1], [1]), helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4, "T", 8])]
    if probe_axis is not None:
        inits.append(helper.make_tensor("probe_axes", TensorProto.INT64, [1], [probe_axis]))
        nodes += [helper.make_node("Unsqueeze", ["q", "probe_axes"], ["q_layer"]),
                  helper.make_node("Concat", ["q_layer"], ["probe_q"], axis=probe_axis)]
        outputs.append(helper.make_tensor_value_info("probe_q", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "attn", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


@needs_cpp
def test_rewrite_gives_the_same_outputs_and_drops_the_mask(tmp_path):
    import onnxruntime as ort

    from fixate_rt.backends import ort_attention
    from fixate_rt.backends.graph_runtime import session_options

    model = _attention_graph()
    onnx.checker.check_model(model)
    path = tmp_path / "attn.onnx"
    onnx.save(model, str(path))
    q, k, v, mask = _case(3, 4, 2, 29, 8, seed=4)
    feed = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "attention_mask": mask.numpy()}
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    fused = ort_attention.fused_session(path, session_options(), ["CPUExecutionProvider"])
    assert fused is not None
    out = fused.run(None, feed)[0]
    has_key = mask.bool().numpy()[:, None, :, None].cumsum(2) > 0  # a real key at or before the query
    has_key = np.broadcast_to(has_key, out.shape)
    np.testing.assert_allclose(out[has_key], plain[has_key], atol=2e-6)
    rewritten = onnx.load(str(path))
    assert ort_attention.fuse_causal_attention(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["CausalAttention"]  # the T x T mask subgraph is gone
    assert not rewritten.graph.initializer


@needs_cpp
def test_rewrite_exposes_the_probed_layers_log_sum_exp(tmp_path):
    """probe_q stacked as the exporter writes it: the rewritten graph also returns probe_lse [B, L, Hq, T], the
    log-sum-exp of each query's scaled real scores (0 for a query with no real key); another stacking: no output."""
    import onnxruntime as ort

    from fixate_rt.backends import ort_attention
    from fixate_rt.backends.graph_runtime import session_options

    q, k, v, mask = _case(3, 4, 2, 29, 8, seed=5)
    feed = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "attention_mask": mask.numpy()}
    path = tmp_path / "attn.onnx"
    onnx.save(_attention_graph(probe_axis=1), str(path))
    fused = ort_attention.fused_session(path, session_options(), ["CPUExecutionProvider"])
    assert [o.name for o in fused.get_outputs()] == ["y", "probe_q", ort_attention.PROBE_LSE]
    lse = fused.run(None, feed)[2]
    scores = torch.einsum("bhid,bhjd->bhij", q, k.repeat_interleave(2, dim=1)) * 0.35
    T = q.shape[2]
    real = torch.ones(T, T, dtype=torch.bool).tril() & mask.bool()[:, None, None, :]
    expected = torch.where(real, scores, -torch.inf).logsumexp(-1).nan_to_num(neginf=0.0)
    assert lse.shape == (3, 1, 4, T)
    np.testing.assert_allclose(lse[:, 0], expected.numpy(), atol=2e-5)
    assert (lse[1, 0, :, : T // 3] == 0).all()  # left padding: no real key yet

    onnx.save(_attention_graph(probe_axis=0), str(path))  # not the exporter's stacking: left alone
    fused = ort_attention.fused_session(path, session_options(), ["CPUExecutionProvider"])
    assert [o.name for o in fused.get_outputs()] == ["y", "probe_q"]
    assert isinstance(fused, ort.InferenceSession)


@needs_cpp
def test_ops_run_alike_on_the_session_pool_and_on_openmp(tmp_path, monkeypatch):
    """The ops run on ONNX Runtime's intra-op pool (KernelContext_ParallelFor, slot 274 of the API table) unless
    FIXATE_RT_ORT_OPS_THREADS=openmp: every work item computes the same numbers either way."""
    from fixate_rt.backends import ort_attention
    from fixate_rt.backends.graph_runtime import session_options

    path = tmp_path / "attn.onnx"
    onnx.save(_attention_graph(probe_axis=1), str(path))
    q, k, v, mask = _case(4, 4, 2, 203, 8, seed=6)  # enough work items for both threads
    feed = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "attention_mask": mask.numpy()}
    outputs = {}
    for threads in ("", "openmp"):
        monkeypatch.setenv(ort_attention.THREADS, threads)
        options = session_options(threads=2)
        outputs[threads] = ort_attention.fused_session(path, options, ["CPUExecutionProvider"]).run(None, feed)
        assert ort_attention.ops_on_openmp() is (threads == "openmp")
    for pooled, openmp in zip(outputs[""], outputs["openmp"], strict=True):
        np.testing.assert_array_equal(pooled, openmp)


def test_rewrite_is_all_or_nothing():
    from fixate_rt.backends import ort_attention

    model = _attention_graph(is_causal=1)  # not the decoders' form: left as it is
    before = model.SerializeToString()
    assert ort_attention.fuse_causal_attention(model) == 0 and model.SerializeToString() == before


@needs_cpp
def test_switch_keeps_onnx_runtime_kernels(tmp_path, monkeypatch):
    from fixate_rt.backends import ort_attention
    from fixate_rt.backends.graph_runtime import session_options

    path = tmp_path / "attn.onnx"
    onnx.save(_attention_graph(), str(path))
    assert ort_attention.kernel_name().startswith("fixate_rt.CausalAttention")
    monkeypatch.setenv(ort_attention.SWITCH, "onnxruntime")
    assert ort_attention.fused_session(path, session_options(), ["CPUExecutionProvider"]) is None
    assert ort_attention.kernel_name() == "onnxruntime Attention"


@needs_cpp
def test_padded_probe_attention_on_the_cpp_kernel_equals_flash():
    """The torch backend's qk_cpp capture: a padded batch's probed layers on the C++ kernel give the flash kernel's
    output and log-sum-exp (+inf where a query has no key); any other mask falls back to the flash kernel."""
    from fixate_rt.probes.capture import sdpa_with_lse

    q, k, v, mask = _case(3, 4, 2, 40, 16, seed=5)
    T = q.shape[2]
    full = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]  # as transformers
    flash_out, flash_lse = sdpa_with_lse(q, k, v, full, 0.25, {})
    cpp_out, cpp_lse = sdpa_with_lse(q, k, v, full, 0.25, {}, cpp=True)
    has_key = full.any(-1)[:, 0]  # [B, T]
    real = has_key[:, :, None, None].expand_as(cpp_out)
    torch.testing.assert_close(cpp_out[real], flash_out[real], atol=2e-6, rtol=1e-5)
    assert torch.isinf(cpp_lse[~has_key[:, None].expand_as(cpp_lse)]).all()
    finite = has_key[:, None].expand_as(cpp_lse)
    torch.testing.assert_close(cpp_lse[finite], flash_lse[finite], atol=2e-5, rtol=1e-5)
    # A mask that is not "causal and real key" (here one query also sees a future key) keeps the flash kernel.
    odd = full.clone()
    odd[0, 0, 5, 6] = True
    cache: dict = {}
    assert sdpa_with_lse(q, k, v, odd, 0.25, cache, cpp=True) is not None
    assert cache[("key_padding", id(odd))] is None


@needs_cpp
def test_a_rewrite_the_runtime_refuses_falls_back_to_the_graph_as_exported(tmp_path, monkeypatch):
    """If the rewritten graph cannot be loaded (an older ONNX Runtime), the session is None and the caller runs the
    graph as exported; one warning says so."""
    import onnxruntime as ort

    from fixate_rt.backends import ort_attention
    from fixate_rt.backends.graph_runtime import session_options

    path = tmp_path / "attn.onnx"
    onnx.save(_attention_graph(), str(path))

    def refuse(*args, **kwargs):
        raise RuntimeError("unknown session config entry")

    warnings: list[str] = []
    monkeypatch.setattr(ort, "InferenceSession", refuse)
    monkeypatch.setattr(ort_attention.log, "warning", lambda msg, *args: warnings.append(msg % args))
    assert ort_attention.fused_session(path, session_options(), ["CPUExecutionProvider"]) is None
    assert len(warnings) == 1 and "could not be loaded (unknown session config entry)" in warnings[0]


@needs_cpp
def test_padded_batch_runs_every_layer_on_the_cpp_kernel(tiny, monkeypatch):
    """With the qk_cpp capture a padded batch's layers, probed or not, run the C++ kernel; logits, Q/K and the
    log-sum-exp equal the flash path's."""
    from fixate_rt.data.layout import LETTERS
    from fixate_rt.data.render import render_slate

    feats = tiny.encode_slate(render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15,
                                           ["Drama", "Comedy", "Crime"], np.random.default_rng(0)))
    inputs = tiny.build_inputs(["Top_genre: Drama", "Top_genre: Drama and more and more and more"], LETTERS, feats, 4)
    assert (inputs.attention_mask == 0).any()  # the first row is left-padded
    layers = tiny.default_probe_layers
    calls = []
    real = ops.causal_attention_cpp
    monkeypatch.setattr(ops, "causal_attention_cpp", lambda *a: calls.append(1) or real(*a))
    label_ids = tiny.label_token_ids(LETTERS)
    with torch.no_grad():
        flash = tiny.decode(inputs, feats, None, label_ids, layers, capture="qk")
        assert not calls
        cpp = tiny.decode(inputs, feats, None, label_ids, layers, capture="qk_cpp")
    assert len(calls) == tiny.num_layers > len(layers)
    torch.testing.assert_close(cpp.label_logits, flash.label_logits, atol=1e-4, rtol=1e-4)
    real = inputs.attention_mask.bool()[:, None, :, None]  # padded positions' states differ (zeros here) and are
    for layer in layers:  # read by nothing: every real query masks them out
        k_cpp, k_flash = cpp.capture.keys[layer], flash.capture.keys[layer]
        torch.testing.assert_close(k_cpp[real.expand_as(k_cpp)], k_flash[real.expand_as(k_flash)], atol=1e-4, rtol=1e-4)
        assert torch.isfinite(k_cpp).all()
        finite = torch.isfinite(flash.capture.lse[layer])
        assert torch.equal(finite, torch.isfinite(cpp.capture.lse[layer]))
        torch.testing.assert_close(cpp.capture.lse[layer][finite], flash.capture.lse[layer][finite], atol=1e-4,
                                   rtol=1e-4)


@needs_cpp
def test_padded_batch_relevance_equals_the_eager_reference_path(tiny):
    """End to end on a padded batch: the rollout probe as `simulate` runs it on CPU (every layer on the C++ kernel,
    the C++ row) gives the eager torch path's logits and token relevance."""
    from fixate_rt.data.layout import LETTERS
    from fixate_rt.data.render import render_slate
    from fixate_rt.plan import plan_ops
    from fixate_rt.probes.operators import probe

    feats = tiny.encode_slate(render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15,
                                           ["Drama", "Comedy", "Crime"], np.random.default_rng(1)))
    profiles = ["Top_genre: Crime", "Top_genre: Drama, Preferred_genres: Comedy, Crime, Animation", "x"]
    inputs = tiny.build_inputs(profiles, LETTERS, feats, 4)
    prompts = torch.randn(3, 4, tiny.hidden_size) * 0.01
    label_ids = tiny.label_token_ids(LETTERS)
    fast, eager = plan_ops("rollout", "cpp", "cpu"), plan_ops("rollout", "torch", "cpu")
    assert fast.capture == "qk_cpp" and eager.capture == "mean"
    a = probe(tiny, inputs, feats, prompts, label_ids, fast, layers=tiny.default_probe_layers)
    b = probe(tiny, inputs, feats, prompts, label_ids, eager, layers=tiny.default_probe_layers)
    torch.testing.assert_close(a.label_logits, b.label_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.token_relevance, b.token_relevance, atol=1e-5, rtol=1e-4)


def _rms_graph(shape, axis=-1, scale_size=None):
    """One ONNX RMSNormalization over ``shape`` (scale of the last dim, or ``scale_size``)."""
    from onnx import TensorProto, helper

    size = scale_size or shape[-1]
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [size], np.linspace(0.5, 1.5, size, dtype=np.float32))
    node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=axis, epsilon=1e-6)
    graph = helper.make_graph([node], "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], [scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def _session(model):
    import onnxruntime as ort

    from fixate_rt.backends import ort_attention

    options = ort.SessionOptions()
    options.register_custom_ops_library(str(ort_attention.library_path()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@needs_cpp
@pytest.mark.parametrize("shape", [(3, 5, 4, 16), (2, 7, 37), (64, 64, 64)])  # per-head rows, odd D, threaded
def test_rms_norm_op_matches_onnx_runtime(shape):
    from fixate_rt.backends import ort_attention

    x = np.random.default_rng(3).normal(size=shape).astype(np.float32) * 4
    expected = _session(_rms_graph(shape)).run(None, {"x": x})[0]
    model = _rms_graph(shape)
    assert ort_attention.fuse_rms_norm(model) == 1 and model.graph.node[0].domain == ort_attention.DOMAIN
    np.testing.assert_allclose(_session(model).run(None, {"x": x})[0], expected, rtol=2e-6, atol=2e-6)


@needs_cpp
def test_rms_norm_rewrite_is_all_or_nothing_and_checks_shapes():
    from fixate_rt.backends import ort_attention

    model = _rms_graph((2, 3, 8), axis=1, scale_size=24)  # not over the last axis: left as it is
    before = model.SerializeToString()
    assert ort_attention.fuse_rms_norm(model) == 0 and model.SerializeToString() == before
    model = _rms_graph((2, 3, 8), scale_size=5)  # scale too short for the rows: the op refuses, ORT names it
    assert ort_attention.fuse_rms_norm(model) == 1
    with pytest.raises(Exception, match=r"fixate_rt.RMSNorm: expected X \[..., D\] and scale \[D\]"):
        _session(model).run(None, {"x": np.ones((2, 3, 8), np.float32)})
