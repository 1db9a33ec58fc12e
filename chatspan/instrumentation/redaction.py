"""Redaction: personal data and secrets are masked before any text is put on a span.

Masks emails, phone numbers, payment card numbers (Luhn-checked, so order numbers
survive), bearer tokens and API keys (Dify ``app-...``, OpenAI ``sk-...``, Supabase
``sb_secret_...``, JWTs), plus the operator's own patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable


def _mask_card(match: re.Match[str]) -> str:
    """Only a Luhn-valid run is a card number: order and tracking numbers survive."""
    digits = [int(c) for c in match.group() if c.isdigit()]
    return "[REDACTED_CARD]" if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group()


def _mask_phone(match: re.Match[str]) -> str:
    """A phone number has at most 15 digits (E.164): longer runs are order numbers."""
    digits = sum(c.isdigit() for c in match.group())
    return "[REDACTED_PHONE]" if digits <= 15 else match.group()


def _luhn_valid(digits: list[int]) -> bool:
    doubled = [(2 * d - 9 if d > 4 else 2 * d) for d in reversed(digits[-2::-2])]
    return (sum(digits[-1::-2]) + sum(doubled)) % 10 == 0


# (quick test, pattern, mask): a rule runs only when its quick test passes, so ordinary
# chat text costs a few substring checks. DIGITS marks rules that need a run of digits.
DIGITS = "digits"
_DIGIT = re.compile(r"[0-9]")
_RULES: list[tuple[tuple[str, ...] | str, str, str | Callable[[re.Match[str]], str]]] = [
    (("earer", "EARER"), r"\b[Bb](?:earer|EARER)\s+[A-Za-z0-9._~+/=-]{8,}", "Bearer [REDACTED]"),
    (("eyJ",), r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", "[REDACTED_TOKEN]"),
    (
        ("app-", "sk-", "sk_", "sb_", "dataset-", "pk_", "rk_"),
        r"\b(?:app|sk|sk-proj|sb_secret|sb_publishable|dataset|pk|rk)[-_][A-Za-z0-9_-]{16,}",
        "[REDACTED_KEY]",
    ),
    (("@",), r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[REDACTED_EMAIL]"),
    (DIGITS, r"\b(?:\d[ -]?){12,18}\d\b", _mask_card),
    (
        DIGITS,
        r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,3}(?!\w)",
        _mask_phone,
    ),
]


class Redactor:
    """Applies the built-in rules (when enabled) and custom patterns, in that order."""

    def __init__(self, *, builtin: bool = True, patterns: Iterable[str] = ()) -> None:
        self._rules = (
            [(hints, re.compile(regex), mask) for hints, regex, mask in _RULES] if builtin else []
        )
        self._custom = [re.compile(pattern) for pattern in patterns]

    def __call__(self, text: str) -> str:
        if not text:
            return text
        has_digits: bool | None = None
        for hints, regex, mask in self._rules:
            if hints is DIGITS:
                if has_digits is None:
                    has_digits = _DIGIT.search(text) is not None
                if not has_digits:
                    continue
            elif not _contains_any(text, hints):
                continue
            text = regex.sub(mask, text)
        for regex in self._custom:
            text = regex.sub("[REDACTED]", text)
        return text


def _contains_any(text: str, hints: tuple[str, ...]) -> bool:
    for hint in hints:  # noqa: SIM110  (a plain loop: any() with a generator is slower here)
        if hint in text:
            return True
    return False
