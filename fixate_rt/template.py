"""The one prompt template, used by every path (simulate, score, train, export, profile).

The reference code mixes two Qwen templates between training, probing and decoding (docs/method.md §2.2,
§8 item 3); fixate-rt renders exactly one: instruction (system turn), then the user turn with the
profile, the image and the question, then the assistant header. The soft prompt goes before all of it.
"""

from __future__ import annotations

INSTRUCTION = (
    "You are a sophisticated user behaviour emulator. Given a user profile, simulate the user's final "
    "selection on this selection interface. Output exactly one label, the one drawn on or beside the "
    "selected item, and nothing else."
)
QUESTION = "Which item does the user select? Answer with one label from: {labels}."
IMAGE_MARKER = "<image>"  # replaced by the backbone's own image block (vision start, pads, vision end)


def render(profile: str, labels: list[str] | tuple[str, ...], context: str = "") -> str:
    """The chat text with ``IMAGE_MARKER`` where the image block goes (Qwen chat markup).

    ``context`` is the slate's own text (e.g. AdSERP's ``Search query: ...``), one line after the profile.
    """
    profile = profile.strip() or "none"
    question = QUESTION.format(labels=", ".join(labels))
    context_line = f"{context.strip()}\n" if context.strip() else ""
    return (
        f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n"
        f"<|im_start|>user\nUser profile: {profile}\n{context_line}{IMAGE_MARKER}\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )
