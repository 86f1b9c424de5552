"""The password policy, the same wherever a password is set (init, users create in the CLI,
API and panel, admin reset, change own password).

- at least 12 characters, at most 200;
- not a common password: the 30,000 most common passwords of the list the ``zxcvbn`` package
  ships (``zxcvbn.frequency_lists``, MIT licence, maintained on PyPI, pinned in setup.cfg),
  compared case-insensitively, also with digits and punctuation stripped from both ends
  ("Password1234!" is "password");
- not one short run repeated ("abcabcabcabc"), not the user's e-mail address or its name part.
"""

from __future__ import annotations

import string
from functools import lru_cache

from core.errors import ValidationFailed

MIN_LENGTH = 12
MAX_LENGTH = 200
_EDGES = string.digits + string.punctuation + string.whitespace


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def problem(password: str, email: str | None = None) -> str | None:
    """What is wrong with ``password`` as a new password, or None."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters long"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters long"
    lowered = password.lower()
    stripped = lowered.strip(_EDGES)
    common = common_passwords()
    if lowered in common or (len(stripped) >= 4 and stripped in common):
        return "is one of the most common passwords; choose another"
    for size in range(1, len(lowered) // 2 + 1):
        if len(lowered) % size == 0 and lowered == lowered[:size] * (len(lowered) // size):
            return "repeats one short sequence; choose another"
    if email:
        address = email.strip().lower()
        if lowered in (address, address.split("@")[0]) or stripped == address.split("@")[0]:
            return "must not be your e-mail address"
    return None


def check(password: str, field: str = "password", email: str | None = None) -> None:
    """Raise ValidationFailed naming ``field`` when the policy refuses ``password``."""
    message = problem(password, email)
    if message:
        raise ValidationFailed.field(field, message)
