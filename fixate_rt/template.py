"""Prompt templates: one per run, used by every path of that run (simulate, score, train, export, profile).

The reference code mixes two Qwen templates between training, probing and decoding (docs/method.md); fixate-rt
renders exactly one per run, chosen by name (`fixate_rt.config.Template`):

* ``fixate-rt`` (default): instruction in a system turn; the user turn holds the profile, the slate's context
  line, the image and a question naming the labels; then the assistant header.
* ``reference``: the reference's RecGaze prompt, word for word. Qwen-VL: one user turn [image, then
  "<profile>\\n\\n<instruction>"] as the Qwen3-VL chat template renders it (no system turn); InternVL: the
  system message "You are a sophisticated user behavior emulator." and the user turn
  "<image>\\n<profile>\\n\\n<instruction>". No context line (RecGaze slates have none).
* ``reference-adserp``: the reference's AdSERP prompt: the slate's context line ("Search query: ...") in place
  of the profile, and the AdSERP instruction; no profile (the reference gives none).

The soft prompt goes before all of it. Each render returns the chat text with ``IMAGE_MARKER`` where the
backbone's image block (start, pads, end) goes.
"""

from __future__ import annotations

from .config import Template, parse_choice

INSTRUCTION = (
    "You are a sophisticated user behaviour emulator. Given a user profile, simulate the user's final "
    "selection on this selection interface. Output exactly one label, the one drawn on or beside the "
    "selected item, and nothing else."
)
QUESTION = "Which item does the user select? Answer with one label from: {labels}."
IMAGE_MARKER = "<image>"  # replaced by the backbone's own image block (vision start, pads, vision end)

# The reference code's strings, verbatim (its RecGaze and AdSERP configurations and trainers).
REFERENCE_RECGAZE_INSTRUCTION = (
    "You are a sophisticated user behavior emulator. Given a user profile, simulate the user's final "
    "selection on this movie selection interface. Your final answer should only output exactly one "
    "uppercase English letter shown below the selected poster; do not output any other content."
)
REFERENCE_RECGAZE_SYSTEM_INTERNVL = "You are a sophisticated user behavior emulator."
REFERENCE_ADSERP_INSTRUCTION = (
    "You are a search behavior simulator. A user is viewing a Google search results page (SERP). "
    "Based on the search query and the visual layout of the results, predict which result the user "
    "will click. Each clickable area is numbered starting from 0. Output only the number of the "
    "clicked area."
)
REFERENCE_ADSERP_SYSTEM_INTERNVL = "You are a search behavior simulator."

FAMILIES = ("qwen", "internvl")


def _chat(user: str, system: str | None = None) -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def _reference(text: str, family: str, internvl_system: str) -> str:
    if family == "internvl":  # the InternVL conversation template: system turn, then "<image>\n" + text
        return _chat(f"{IMAGE_MARKER}\n{text}", internvl_system)
    return _chat(f"{IMAGE_MARKER}{text}")  # Qwen3-VL's chat template: the image item, then the text item


def render(profile: str, labels: list[str] | tuple[str, ...], context: str = "",
           template: Template | str = Template.fixate_rt, family: str = "qwen") -> str:
    """The chat text with ``IMAGE_MARKER`` where the image block goes.

    ``context`` is the slate's own text (e.g. AdSERP's ``Search query: ...``); ``family`` is the backbone's
    (``qwen`` or ``internvl``), which only the reference templates depend on.
    """
    template = parse_choice(Template, template, "template")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if template is Template.reference:
        return _reference(f"{profile}\n\n{REFERENCE_RECGAZE_INSTRUCTION}", family, REFERENCE_RECGAZE_SYSTEM_INTERNVL)
    if template is Template.reference_adserp:
        return _reference(f"{context}\n\n{REFERENCE_ADSERP_INSTRUCTION}", family, REFERENCE_ADSERP_SYSTEM_INTERNVL)
    profile = profile.strip() or "none"
    question = QUESTION.format(labels=", ".join(labels))
    context_line = f"{context.strip()}\n" if context.strip() else ""
    return _chat(f"User profile: {profile}\n{context_line}{IMAGE_MARKER}\n{question}", INSTRUCTION)
