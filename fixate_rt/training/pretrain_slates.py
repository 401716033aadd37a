"""Pretraining of the built-in ``slates-qwen3vl`` on grounding tasks (`fixate_rt.data.grounding`).

The whole model (vision tower and decoder) is trained from seeded random weights with AdamW on the
cross-entropy between the answer distribution of each task and the model's next-token distribution at the
answer position (full vocabulary, so the answer letters must win against every other token), plus a dense
naming loss: every image token on a poster names, through the same ``lm_head``, the poster's genre word and
letter (`dense_loss`). Each step draws fresh slates: the model never sees a slate twice, and the held-out
slates come from another seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import layout as geo
from ..data.grounding import TASKS, Task, chance_accuracy, make_task, task_stream
from ..data.synth_vocab import GENRES
from ..model_io import SlateFeatures

LABELS = geo.LETTERS
TRAIN_MIX = {"genre": 0.3, "title": 0.15, "position": 0.2, "choice": 0.35}
EVAL_SEED = 7_777  # held-out slates: a stream no training seed uses


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    mix: dict = field(default_factory=lambda: dict(TRAIN_MIX))
    tasks_per_slate: int = 2  # tasks asked of each rendered slate (rendering is a third of a step otherwise)
    eval_every: int = 300
    dense_weight: float = 1.0  # weight of the per-image-token naming loss (`dense_loss`); 0 turns it off
    attend_weight: float = 1.0  # weight of the grounding loss on the answer row's attention (`attend_loss`)
    attend_layers: tuple[int, ...] = (2, 3)  # decoder layers whose answer-row attention it supervises
    decoder_layers: int | None = None  # decoder depth; None: `slates_model.SHAPE`'s (4)
    eval_per_task: int = 100


def initial_model(seed: int, decoder_layers: int | None = None):
    """The seeded random Qwen3-VL of `slates_model.SHAPE` (``decoder_layers`` deep when given) and its processor
    (tokenizer + image processor)."""
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ..backbones import slates_model, tiny
    from ..backbones.processor import QwenVLProcessor

    tokenizer = tiny.build_tokenizer(slates_model.EXTRA_WORDS)
    family, text, vision, max_pixels = slates_model.SHAPE
    if decoder_layers is not None:
        text = {**text, "num_hidden_layers": decoder_layers}
    config = tiny.build_config(tokenizer, slates_model.NAME, (family, text, vision, max_pixels))
    torch.manual_seed(seed)
    model = transformers.Qwen3VLForConditionalGeneration(config)
    image_processor = Qwen2VLImageProcessorPil(patch_size=vision["patch_size"], merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": 56 * 56, "longest_edge": max_pixels})
    return model, QwenVLProcessor(tokenizer, image_processor)


def wrap(model, processor, name: str = "slates-qwen3vl"):
    """The model as a `QwenVLBackbone` (our input assembly, positions and decoder path), ready to train."""
    from ..backbones.qwen_vl import QwenVLBackbone
    from ..probes.capture import CAPTURE_IMPLEMENTATION

    model.set_attn_implementation({"text_config": CAPTURE_IMPLEMENTATION, "vision_config": "sdpa"})
    return QwenVLBackbone(model, processor, name)


def slate_features(backbone, tasks: list[Task]) -> list[SlateFeatures]:
    """Vision tower over the tasks' slates in one call (with gradients when enabled), once per distinct slate.
    One SlateFeatures per task."""
    seeds = list(dict.fromkeys(t.slate_seed for t in tasks))
    first = {t.slate_seed: t for t in reversed(tasks)}
    unique = _vision(backbone, [first[s].render() for s in seeds])
    return [unique[seeds.index(t.slate_seed)] for t in tasks]


def _vision(backbone, images) -> list[SlateFeatures]:
    prepared = [backbone.processor.preprocess_image(im) for im in images]
    pixels = torch.cat([p for p, _ in prepared]).to(backbone.device, backbone.dtype)
    grids = torch.cat([g for _, g in prepared])
    out = backbone.model.model.get_image_features(pixels, grids.to(backbone.device), return_dict=True)
    deep = getattr(out, "deepstack_features", None) or []
    feats = []
    for i, (image, (_, grid)) in enumerate(zip(images, prepared)):
        feats.append(SlateFeatures(out.pooler_output[i], [layer[i] for layer in _split(deep, grids)], grid,
                                   backbone.processor.token_boxes(grid, image.size)))
    return feats


def _split(deepstack, grids: torch.Tensor) -> list:
    """DeepStack features per layer, split per image when the model returns them concatenated."""
    merged = [int(t * h * w) // 4 for t, h, w in grids.tolist()]
    out = []
    for layer in deepstack:
        out.append(list(torch.split(layer, merged)) if isinstance(layer, torch.Tensor) else list(layer))
    return out


def answer_logits(backbone, tasks: list[Task], feats: list[SlateFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """(full-vocabulary log-probabilities [B, V], label log-probabilities [B, 15]) at the answer position."""
    logp = forward(backbone, tasks, feats, dense=False).answer
    return logp, logp[:, backbone.label_token_ids(LABELS)]


@dataclass
class ForwardOut:
    """answer [B, V] log-probabilities at the answer position; image [B, P, V] per image token (or None);
    attention {layer: [B, H, P]} the answer row's attention on the image tokens, in the graph."""

    answer: torch.Tensor
    image: torch.Tensor | None
    attention: dict[int, torch.Tensor]


def forward(backbone, tasks: list[Task], feats: list[SlateFeatures], dense: bool = True,
            attend_layers: tuple[int, ...] = ()) -> ForwardOut:
    """One decoder pass; ``attend_layers`` capture the answer row of their attention (SDPA elsewhere)."""
    from ..probes.capture import record_attention

    inputs = backbone.build_inputs([t.profile for t in tasks], LABELS, feats, 0, [t.context for t in tasks])
    model = backbone.model
    with record_attention(tuple(attend_layers), "row") as recorder:
        hidden = model.model(inputs_embeds=model.get_input_embeddings()(inputs.input_ids),
                              attention_mask=inputs.attention_mask, position_ids=inputs.position_ids,
                              mm_encoder_outputs={"image": backbone.vision_output(feats)},
                              use_cache=False).last_hidden_state
    index = inputs.image_index.to(hidden.device)
    attention = {layer: row.gather(2, index[:, None].expand(-1, row.shape[1], -1))
                 for layer, row in recorder.maps.items()}
    answer = torch.log_softmax(model.lm_head(hidden[:, -1]).float(), dim=-1)
    if not dense:
        return ForwardOut(answer, None, attention)
    image = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
    return ForwardOut(answer, torch.log_softmax(model.lm_head(image).float(), dim=-1), attention)


def token_slots(feats: list[SlateFeatures]) -> torch.Tensor:
    """[B, P] the slot (0–14) of the poster each image token's centre lies on (the first, as exclusive pooling
    assigns it); -1 on the page background."""
    from ..reference import centre_in_slots

    boxes = torch.as_tensor(geo.recgaze_boxes(), dtype=torch.float32)
    out = []
    for f in feats:
        holds = centre_in_slots(torch.as_tensor(f.token_boxes, dtype=torch.float32), boxes)  # [15, P]
        out.append(torch.where(holds.any(0), holds.int().argmax(0), -1))
    return torch.stack(out)


def dense_targets(backbone, tasks: list[Task], slots: torch.Tensor) -> torch.Tensor:
    """[B, P, 2] token ids every image token should name: the genre word and the letter of the poster its
    centre lies on; -1 on the page background (no target). slots [B, P] from `token_slots`."""
    genre_ids = backbone.processor.tokenizer.convert_tokens_to_ids(list(GENRES))
    slot_genre = torch.tensor([[genre_ids[GENRES.index(it["genre"])] for it in t.items] for t in tasks])  # [B, 15]
    slot_letter = torch.tensor(backbone.label_token_ids(LABELS))[None].expand(len(tasks), -1)  # [B, 15]
    on_poster = slots >= 0
    picked = [ids.gather(1, slots.clamp(min=0)) for ids in (slot_genre, slot_letter)]
    return torch.stack([torch.where(on_poster, ids, -1) for ids in picked], -1)


def attend_loss(attention: dict[int, torch.Tensor], tasks: list[Task], slots: torch.Tensor) -> torch.Tensor:
    """Grounding supervision: −log of the head-averaged attention mass the answer row puts on the image tokens
    of the answer's posters (the slots in the support of the task's answer distribution), averaged over the
    supervised layers. attention {layer: [B, H, P]}; slots [B, P]."""
    support = torch.tensor(np.stack([t.target > 0 for t in tasks]))  # [B, 15]
    on_answer = (slots >= 0) & support.gather(1, slots.clamp(min=0))  # [B, P]
    losses = []
    for row in attention.values():
        mass = (row.float().mean(1) * on_answer.to(row.device)).sum(-1)
        losses.append(-torch.log(mass.clamp(min=1e-6)).mean())
    return torch.stack(losses).mean()


def dense_loss(image_logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over poster tokens of −½(log p(genre word) + log p(letter)): each image token learns to name what it
    shows (the answer position can then find a genre or a letter by matching, not by guessing)."""
    valid = targets[..., 0] >= 0
    picked = image_logp.gather(-1, targets.clamp(min=0).to(image_logp.device))  # [B, P, 2]
    return -(picked.mean(-1) * valid.to(picked)).sum() / valid.sum().clamp(min=1)


def task_loss(label_logp: torch.Tensor, tasks: list[Task]) -> torch.Tensor:
    """Cross-entropy between each task's answer distribution [B, 15] and the model's (full-vocabulary) one."""
    target = torch.tensor(np.stack([t.target for t in tasks]), dtype=label_logp.dtype, device=label_logp.device)
    return -(target * label_logp).sum(-1).mean()


def held_out_tasks(per_task: int, seed: int = EVAL_SEED) -> list[Task]:
    """``per_task`` tasks of every kind on slates no training step draws (their own seed stream)."""
    rng = np.random.default_rng([seed, 0])
    return [make_task(kind, rng, seed * 1_000_003 + i * len(TASKS) + k)
            for k, kind in enumerate(TASKS) for i in range(per_task)]


@torch.no_grad()
def evaluate(backbone, tasks: list[Task], batch_size: int = 16) -> dict:
    """Per task kind: accuracy (argmax slot in the answer's support), chance (a uniform guess), mean answer mass."""
    hits: dict[str, list[float]] = {k: [] for k in TASKS}
    chance: dict[str, list[float]] = {k: [] for k in TASKS}
    mass: dict[str, list[float]] = {k: [] for k in TASKS}
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        _, label_logp = answer_logits(backbone, chunk, slate_features(backbone, chunk))
        p = torch.softmax(label_logp, -1).numpy()
        for task, row in zip(chunk, p):
            hits[task.kind].append(float(task.target[int(row.argmax())] > 0))
            chance[task.kind].append(chance_accuracy(task))
            mass[task.kind].append(float((row * (task.target > 0)).sum()))
    return {k: {"n": len(hits[k]), "accuracy": float(np.mean(hits[k])), "chance": float(np.mean(chance[k])),
                "answer_mass": float(np.mean(mass[k]))} for k in TASKS if hits[k]}


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pretrain(cfg: PretrainConfig, on_step: Callable[[dict], None] | None = None, backbone=None,
             eval_tasks: list[Task] | None = None):
    """Train from seeded random weights (or the given backbone). Returns (backbone, history of step records);
    every ``eval_every`` steps a record carries ``held_out``: `evaluate` on ``eval_tasks``."""
    torch.manual_seed(cfg.seed)
    if backbone is None:
        backbone = wrap(*initial_model(cfg.seed, cfg.decoder_layers))
    model = backbone.model.train().requires_grad_(True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    stream = task_stream(cfg.seed, cfg.mix, cfg.tasks_per_slate)
    history, t0 = [], time.perf_counter()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        tasks = [next(stream) for _ in range(cfg.batch_size)]
        feats = slate_features(backbone, tasks)
        attend = cfg.attend_layers if cfg.attend_weight > 0 else ()
        out = forward(backbone, tasks, feats, dense=cfg.dense_weight > 0, attend_layers=attend)
        loss = answer_loss = task_loss(out.answer[:, backbone.label_token_ids(LABELS)], tasks)
        slots = token_slots(feats)  # [B, P], shared by both supervised terms
        if out.image is not None:
            loss = loss + cfg.dense_weight * dense_loss(out.image, dense_targets(backbone, tasks, slots))
        attention_loss = attend_loss(out.attention, tasks, slots) if attend else torch.zeros(())
        loss = loss + cfg.attend_weight * attention_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        record = {"step": step + 1, "loss": loss.item(), "answer_loss": answer_loss.item(),
                  "attend_loss": attention_loss.item(), "lr": lr_at(step, cfg),
                  "seconds": time.perf_counter() - t0}
        if eval_tasks and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            record["held_out"] = evaluate(backbone, eval_tasks)
            model.train()
        history.append(record)
        if on_step is not None:
            on_step(record)
    model.eval().requires_grad_(False)
    return backbone, history


def save(backbone, folder: Path) -> None:
    """An ordinary checkpoint folder: config + safetensors weights, tokenizer, image processor config."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone.model.save_pretrained(folder, safe_serialization=True)
    backbone.processor.tokenizer.save_pretrained(folder)
    backbone.processor.image_processor.save_pretrained(folder)
