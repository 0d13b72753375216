"""Keep secrets out of evidence, messages, logs and reports.

Two layers: literal values known to be secret (registered when the environment file is
loaded: values of secret-looking variables, secret headers, URL passwords) and patterns
for secrets that arrive in observed text (``password=...``, ``Bearer ...``,
``scheme://user:pass@``).

>>> r = Redactor()
>>> r.add("s3cr3t-token")
>>> r.text("GET with s3cr3t-token failed")
'GET with *** failed'
>>> r.text("postgresql://app:hunter2@db:5432/app")
'postgresql://app:***@db:5432/app'
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(
    r"pass(word|wd)?|pwd|token|secret|api[-_]?key|credential|auth|cookie|session|dsn|private",
    re.IGNORECASE,
)
_PATTERNS = [
    # scheme://user:password@host -> keep the user, hide the password
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE), r"\g<keep>***@"),
    (re.compile(r"(?P<keep>\bBearer\s+)[^\s\"',;]+", re.IGNORECASE), r"\g<keep>***"),
    (re.compile(r"(?P<keep>\bBasic\s+)[A-Za-z0-9+/=]{8,}", re.IGNORECASE), r"\g<keep>***"),
    (
        re.compile(
            # a whole identifier ending in a secret word (DB_PASSWORD=, api_token:), not a
            # hyphenated name such as the check id "url-password: ..."
            r"(?P<keep>(?<![\w.-])\w*?(?:password|passwd|token|secret|api[-_]?key|access[-_]?key)[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s\"',;&]+",
            re.IGNORECASE,
        ),
        r"\g<keep>***",
    ),
]
# Every pattern above needs one of these words; most strings in a report have none, and one
# search is far cheaper than four substitutions (the whole report passes through here).
_TRIGGER = re.compile(r"://|bearer|basic|pass|token|secret|api|access", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True when a variable or header name says its value is secret.

    >>> is_secret_name("PGPASSWORD"), is_secret_name("Authorization"), is_secret_name("HOST")
    (True, True, False)
    """
    return bool(SECRET_NAME.search(name))


class Redactor:
    """Replaces registered secret values and secret-shaped text with ``***``."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._literal: re.Pattern | None = None  # all registered values, longest first
        self._lock = threading.Lock()

    def add(self, value: object) -> None:
        """Register a literal secret; values shorter than 3 characters would mask noise."""
        text = "" if value is None else str(value)
        if len(text) >= 3:
            with self._lock:
                if text not in self._values:
                    self._values.add(text)
                    self._literal = re.compile("|".join(
                        re.escape(v) for v in sorted(self._values, key=len, reverse=True)))

    def text(self, value: str) -> str:
        """Redact one string."""
        literal = self._literal
        if literal is not None:
            value = literal.sub(MASK, value)
        if _TRIGGER.search(value):
            for pattern, replacement in _PATTERNS:
                value = pattern.sub(replacement, value)
        return value

    def excerpt(self, value: str, limit: int, keep: str = "head") -> str:
        """Redact first, then cut to ``limit`` characters (``keep`` the head or the tail): a cut
        made before redaction could leave a fragment of a secret no pattern recognises.
        Every place that shortens observed text for a message or evidence goes through here.

        >>> r = Redactor(); r.add("abcdefgh")
        >>> r.excerpt("token abcdefgh and more", 10), r.excerpt("x abcdefgh", 5, keep="tail")
        ('token *** ', ' ***')
        """
        text = self.text(value)
        if len(text) <= limit:
            return text
        return text[:limit] if keep == "head" else text[-limit:]

    def data(self, value: Any) -> Any:
        """Redact every string inside dicts, lists and tuples (keys included).

        >>> Redactor().data({"url": "https://u:pw1234@h/x", "n": 3})
        {'url': 'https://u:***@h/x', 'n': 3}
        """
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


#: The process-wide redactor: the environment loader registers secrets here and every
#: output path (evidence, failure messages, reports, terminal summary) passes through it.
REDACTOR = Redactor()
