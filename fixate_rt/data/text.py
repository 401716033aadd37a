"""Rules for text that reaches the prompt (profiles, slate context lines, answer labels) and for ids that
become part of a file name.

Prompt text is data, never markup: a profile that contains a chat-template control token (``<|im_end|>``,
``<|image_pad|>``, InternVL's ``<IMG_CONTEXT>``) would end the user turn early or inject image placeholders,
so such text is refused with the field named rather than silently tokenised as control tokens.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from ..errors import ValidationError

MAX_TEXT_CHARS = 4000  # per field; the prompt must stay far below the model's context
MAX_ID_CHARS = 200
# Qwen-style <|name|> markers and InternVL's image tags, the control tokens of the supported families.
_CONTROL_TOKEN = re.compile(r"<\|[^<>\s]{0,64}?\|>|</?img>|<IMG_CONTEXT>", re.IGNORECASE)


def _control_chars(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"]


def check_prompt_text(text: object, loc: str) -> str:
    """Return ``text`` if it may appear in a prompt; else raise naming ``loc`` and the offending part."""
    if not isinstance(text, str):
        raise ValidationError(f"{loc}: expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValidationError(f"{loc}: {len(text)} characters, more than the {MAX_TEXT_CHARS} allowed")
    found = _CONTROL_TOKEN.search(text)
    if found:
        raise ValidationError(f"{loc}: contains the model control token '{found.group(0)}' (text must not hold "
                              "chat-template markup)")
    bad = _control_chars(text)
    if bad:
        raise ValidationError(f"{loc}: contains the control character {bad[0]!r}")
    return text


def check_id(value: object, loc: str) -> str:
    """An id (user, slate, trial): a non-empty string without control characters, at most MAX_ID_CHARS long."""
    if not isinstance(value, str):
        raise ValidationError(f"{loc}: expected a string id, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(f"{loc}: empty id")
    if len(value) > MAX_ID_CHARS:
        raise ValidationError(f"{loc}: id of {len(value)} characters, more than the {MAX_ID_CHARS} allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a file name with bytes that are not UTF-8 (Python keeps them as surrogates)
        raise ValidationError(f"{loc}: id {value!r} is not valid UTF-8 text") from None
    bad = _control_chars(value) + [c for c in value if c in "\n\t"]
    if bad:
        raise ValidationError(f"{loc}: id contains the control character {bad[0]!r}")
    return value


def check_path_id(value: object, loc: str) -> str:
    """An id that names a file (slate ids, trial ids): `check_id`, and no path separators, no leading dot (no
    ``..``, no hidden files), so it can never point outside its folder."""
    check_id(value, loc)
    if "/" in value or "\\" in value or value.startswith(".") or ":" in value:
        raise ValidationError(f"{loc}: id '{value}' cannot name a file (no '/', '\\', ':' or leading '.')")
    return value


def file_safe(value: str) -> str:
    """Encode any id as one safe file-name component (for outputs named after user ids): characters other than
    letters, digits, '-', '_' and '.' become ``%XX``, a leading '.' too, so distinct ids stay distinct. An
    encoding longer than 120 characters is cut and completed by a digest of the whole id (file names are limited
    to 255 bytes)."""
    out = []
    for i, ch in enumerate(value):
        if (ch.isascii() and ch.isalnum()) or ch in "-_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    encoded = "".join(out)
    if len(encoded) > 120:
        encoded = f"{encoded[:100]}~{hashlib.sha256(value.encode('utf-8')).hexdigest()[:16]}"
    return encoded
