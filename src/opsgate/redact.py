"""Keep secrets out of evidence, messages, logs and reports.

Two layers: literal values known to be secret (registered when the environment file is
loaded) and patterns for secrets that arrive in observed text (``password=...``,
``Bearer ...``, ``Basic ...``, ``scheme://user:pass@``).

Which values are secret (registered by :mod:`opsgate.envfile`):

- a variable whose NAME contains KEY, SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL or
  PRIVATE (any case: ``SIGNING_KEY``, ``GH_TOKEN``, ``PGPASSWORD``, ``DB_PASSWD``), where
  it is substituted and, because commands inherit it, in opsgate's own environment;
- a variable named in the environment file's top-level ``secrets: [NAME, ...]``;
- a value written ``{value: ..., secret: true}`` (a header or command ``env`` entry);
- a header whose name looks secret (:func:`is_secret_name`: Authorization, Cookie,
  X-Api-Key, X-Auth-Token ...), and the token after its scheme (``Bearer <token>``);
- the password of every URL or DSN (``url``, ``dsn``, ``engine``), and the value of each
  credential in its query string (:func:`is_secret_parameter`: ``?password=``,
  ``?sslpassword=``, ``?token=`` ...), written in the file or substituted.

A secret value that parses as a URL with a password registers only the password (a
``DATABASE_URL`` hides ``pw`` in ``postgresql://app:pw@db/x``, not the host). Values
shorter than :data:`MIN_SECRET` characters are never registered: masking ``100`` or
``dev`` everywhere would hide evidence; the loader warns instead. Names such as AUTH,
SESSION or URL alone do not make a variable secret.

Each registered secret is masked in every form it takes in output: as is, JSON-escaped
(``\\"``, ``\\\\``, ``\\u00dc``, ``\\/``), URL-encoded (``%2F``, ``+``), repr-quoted, inside
base64 (``Basic`` credentials ``user:secret`` at any alignment), and a fragment of it at
the edge of a string (what a cut made before redaction leaves): 6 characters or more of a
secret of 8 or more; in a string of 64 characters or fewer (a status, a name: rarely a
cut) the fragment must also be half the secret or more, so ``passed`` stays ``passed``
when a password ends in ``-pass``.

>>> r = Redactor()
>>> r.add("s3cr3t-token")
True
>>> r.text("GET with s3cr3t-token failed")
'GET with *** failed'
>>> r.text("postgresql://app:hunter2@db:5432/app")
'postgresql://app:***@db:5432/app'
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 4  # shorter values are never registered (they would mask noise)
EDGE_SECRET = 8  # secrets at least this long are also masked by fragments at a string's edge
EDGE_FRAGMENT = 6  # ... fragments of at least this many characters, and in a string of at most
EDGE_TEXT = 64  # this many (a status, a name: rarely a cut) of at least half the secret, so that
                # "passed" stays "passed" when a password ends in "-pass"
# header and key names whose values are secret (broader than variable names: headers)
SECRET_NAME = re.compile(
    r"pass(word|wd)?|pwd|token|secret|api[-_]?key|credential|auth|cookie|session|dsn|private",
    re.IGNORECASE,
)
# variable names whose values are secret: documented, predictable, no AUTH/SESSION/URL
SECRET_VARIABLE = re.compile(r"key|secret|token|passw(or)?d|credential|private", re.IGNORECASE)
# query parameters of an address whose values are credentials: a secret word at the END of the
# name (password, sslpassword, passwd, pass, access_token, api_key, client_secret), or the whole
# name auth/session/cookie; not passfile, authSource, target_session_attrs (a path, a database,
# a mode: masking those everywhere would hide evidence)
SECRET_PARAMETER = re.compile(
    r"(?:pass(?:word|wd)?|pwd|token|secret|api[-_]?key|access[-_]?key|credentials?|private[-_]?key|session[-_]?id)$"
    r"|^(?:auth|session|cookie)$",
    re.IGNORECASE,
)
_PATTERNS = [
    # scheme://user:password@host -> keep the user, hide the password; the scheme is bounded
    # (32 characters): unbounded, every letter of a long word was tried as a scheme's start,
    # quadratic (a 40 KB token in a message took 9 s to redact, a 1 MB one hours)
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]{0,31}://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE), r"\g<keep>***@"),
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
_TRIGGER = re.compile(r"://|bearer|basic|passw|token|secret|api|access", re.IGNORECASE)
_MEMO_TEXT = 64  # short strings (keys, outcomes, names) repeat: their redaction is remembered
_MEMO_SIZE = 200_000


def is_secret_name(name: str) -> bool:
    """True when a header or key name says its value is secret.

    >>> is_secret_name("Authorization"), is_secret_name("X-Api-Key"), is_secret_name("Accept")
    (True, True, False)
    """
    return bool(SECRET_NAME.search(name))


def is_secret_variable(name: str) -> bool:
    """True when an environment variable's name says its value is secret.

    >>> [is_secret_variable(n) for n in ("SIGNING_KEY", "GH_TOKEN", "DB_PASSWD", "AUTH_SERVICE_URL", "AUTH_LOG_LINES")]
    [True, True, True, False, False]
    """
    return bool(SECRET_VARIABLE.search(name))


def is_secret_parameter(name: str) -> bool:
    """True when a query-string parameter of a URL or DSN holds a credential.

    >>> [is_secret_parameter(n) for n in ("password", "sslpassword", "pass", "access_token", "api_key")]
    [True, True, True, True, True]
    >>> [is_secret_parameter(n) for n in ("passfile", "authSource", "target_session_attrs", "sslmode", "db")]
    [False, False, False, False, False]
    """
    return bool(SECRET_PARAMETER.search(name))


def encoded_forms(secret: str) -> set[str]:
    """The forms a secret can take in output, itself included: JSON-escaped, URL-encoded,
    repr-quoted (and those escaped once more), and the stable cores of its base64 at each of
    the three alignments it can have inside a longer encoded string (``user:secret``).

    >>> forms = encoded_forms('a/b"c\\u00dc pw')
    >>> [f in forms for f in (r'a\\/b\\"c\\u00dc pw', r'a\\/b\\"c\\u00DC pw', 'a%2Fb%22c%C3%9C%20pw', 'a%2fb%22c%c3%9c+pw')]
    [True, True, True, True]
    >>> r = Redactor(); _ = r.add("s3cr3t-value")
    >>> base64.b64encode(b"user:s3cr3t-value").decode(), r.text("Basic dXNlcjpzM2NyM3QtdmFsdWU=")
    ('dXNlcjpzM2NyM3QtdmFsdWU=', 'Basic dXNlcjp***U=')
    """
    escaped = {secret}
    for form in _escapes(secret):
        escaped.add(form)
        escaped.update(_escapes(form))  # escaped twice: JSON inside JSON, a repr of a repr
    forms = set(escaped)
    forms.add(repr(secret.encode("utf-8"))[2:-1])  # a repr of bytes: b'...\\xc3\\x9c...'
    for url in (quote(secret, safe=""), quote(secret), quote_plus(secret), quote(secret, safe="!'()*~")):
        forms.add(url)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), url))
    forms.update(_base64_cores(secret.encode("utf-8")))
    return {f for f in forms if len(f) >= MIN_SECRET}


def _escapes(text: str) -> list[str]:
    ascii_json = json.dumps(text)[1:-1]
    upper_json = re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), ascii_json)
    plain_json = json.dumps(text, ensure_ascii=False)[1:-1]
    single = repr(text + "\"'")[1:-4]  # repr with both quotes present escapes the single one
    forms = [ascii_json, upper_json, plain_json, repr(text)[1:-1], ascii(text)[1:-1],
             single, single.replace("\\'", "'").replace('"', '\\"')]
    html_json = ascii_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # Go's encoder
    return forms + [html_json] + [f.replace("/", "\\/") for f in (ascii_json, upper_json, plain_json, html_json)]


def _base64_cores(data: bytes) -> set[str]:
    """Base64 characters that depend on ``data`` alone, for data at offset 0, 1 or 2 of a
    3-byte group (standard and URL-safe alphabets); cores shorter than 6 would mask noise."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        start, end = -(-8 * offset // 6), 8 * (offset + len(data)) // 6
        core = encoded[start:end]
        if len(core) >= 6:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


class Redactor:
    """Replaces registered secret values (in every encoded form) and secret-shaped text
    with ``***``."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        # one snapshot read by text(): literal regex; edge fragments (secret, where it is cut)
        # by their 6 outer characters; the memo of short strings redacted under this state
        self._state: tuple[re.Pattern | None, dict, dict, dict[str, str]] | None = (None, {}, {}, {})
        self._lock = threading.Lock()

    def add(self, value: object) -> bool:
        """Register a literal secret and its encoded forms; False (not registered) when it
        is shorter than MIN_SECRET characters.

        >>> r = Redactor(); r.add("abc"), r.add("abcd")
        (False, True)
        """
        text = "" if value is None else str(value)
        if len(text) < MIN_SECRET:
            return False
        with self._lock:
            if text not in self._values:
                self._values.add(text)
                self._forms |= encoded_forms(text)
                self._state = None  # rebuilt once, on the next use: loading many secrets stays linear
        return True

    def _current(self) -> tuple[re.Pattern | None, dict, dict, dict[str, str]]:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                heads: dict[str, list[tuple[str, int]]] = {}
                tails: dict[str, list[tuple[str, int]]] = {}
                for secret in sorted(self._values, key=len, reverse=True):
                    if len(secret) >= EDGE_SECRET:
                        for cut in range(1, len(secret) - EDGE_FRAGMENT + 1):  # longest fragments first
                            heads.setdefault(secret[cut:cut + EDGE_FRAGMENT], []).append((secret, cut))
                            end = len(secret) - cut
                            tails.setdefault(secret[end - EDGE_FRAGMENT:end], []).append((secret, end))
                literal = re.compile(_trie_pattern(self._forms)) if self._forms else None
                self._state = (literal, heads, tails, {})
            return self._state

    def text(self, value: str) -> str:
        """Redact one string.

        >>> r = Redactor(); _ = r.add("hunter2-SECRET")
        >>> r.text('{"pw": "hunter2-SECRET"}'), r.text("q=hunter2-SECRET%21"), r.text("SECRET"), r.text("r2-SECRET")
        ('{"pw": "***"}', 'q=***%21', 'SECRET', '***')
        >>> r.text("2-SECRET and the rest of a string that was cut before it was redacted")
        '*** and the rest of a string that was cut before it was redacted'
        """
        literal, heads, tails, memo = self._current()
        short = len(value) <= _MEMO_TEXT
        if short:
            done = memo.get(value)
            if done is not None:
                return done
        out = value
        if literal is not None:
            out = literal.sub(MASK, out)
            if len(out) >= EDGE_FRAGMENT:
                out = _edges(out, heads, tails, short_text=len(out) <= EDGE_TEXT)
        if _TRIGGER.search(out):
            for pattern, replacement in _PATTERNS:
                out = pattern.sub(replacement, out)
        if short:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[value] = out
        return out

    def excerpt(self, value: str, limit: int, keep: str = "head") -> str:
        """Redact first, then cut to ``limit`` characters (``keep`` the head or the tail): a cut
        made before redaction could leave a fragment of a secret no pattern recognises.
        Every place that shortens observed text for a message or evidence goes through here.

        >>> r = Redactor(); _ = r.add("abcdefgh")
        >>> r.excerpt("token abcdefgh and more", 10), r.excerpt("xy abcdefgh", 4, keep="tail")
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
        memo, text = self._current()[3], self.text

        def one(v: Any) -> Any:  # a remembered short string costs one dict lookup, no call
            if isinstance(v, str):
                done = memo.get(v)
                return done if done is not None else text(v)
            if isinstance(v, dict):
                return {one(k) if isinstance(k, str) else k: one(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [one(x) for x in v]
            return v

        return one(value)

    def data_in_place(self, value: dict | list) -> None:
        """Redact every string inside ``value`` (dicts and lists, keys included) where it is,
        without building a second tree: for a document about to be serialised whole.

        >>> r = Redactor(); doc = {"a": ["https://u:pw1234@h/x", 3]}
        >>> r.data_in_place(doc); doc
        {'a': ['https://u:***@h/x', 3]}
        """
        memo, text = self._current()[3], self.text
        stack = [value]
        while stack:  # a loop, not recursion: a report's depth is bounded, its size is not
            node = stack.pop()
            is_dict = isinstance(node, dict)
            # a dict's values and a list's items are handled alike (assigning to an existing
            # key or index while iterating is safe: the size does not change)
            for slot, item in (node.items() if is_dict else enumerate(node)):
                if isinstance(item, str):
                    done = memo.get(item)
                    done = done if done is not None else text(item)
                    if done is not item:
                        node[slot] = done
                elif isinstance(item, (dict, list)):
                    stack.append(item)
                elif isinstance(item, tuple):
                    node[slot] = item = list(item)
                    stack.append(item)
            if is_dict:
                renamed = [k for k in node if isinstance(k, str) and (memo.get(k) or text(k)) != k]
                for key in renamed:  # keys holding a secret: the entry moves, its order kept
                    items = list(node.items())
                    node.clear()
                    node.update((text(k) if k == key else k, v) for k, v in items)


def _edges(text: str, heads: dict[str, list[tuple[str, int]]], tails: dict[str, list[tuple[str, int]]],
           short_text: bool) -> str:
    """Mask a secret's fragment at the start (its end) or at the end (its start) of ``text``,
    also just inside an ellipsis that marks a cut; in a short text, only a fragment of half
    its secret or more (candidates come longest first: the first that fits is the longest)."""
    start = 3 if text.startswith("...") else 1 if text.startswith("…") else 0
    for secret, cut in heads.get(text[start:start + EDGE_FRAGMENT], ()):
        if text.startswith(secret[cut:], start):
            if not short_text or 2 * (len(secret) - cut) >= len(secret):
                text = text[:start] + MASK + text[start + len(secret) - cut:]
            break
    end = len(text) - (3 if text.endswith("...") else 1 if text.endswith("…") else 0)
    if end >= EDGE_FRAGMENT:
        for secret, cut in tails.get(text[end - EDGE_FRAGMENT:end], ()):
            if text.endswith(secret[:cut], 0, end):
                if not short_text or 2 * cut >= len(secret):
                    text = text[:end - cut] + MASK + text[end:]
                break
    return text


def _trie_pattern(words: set[str]) -> str:
    """One regex matching any of ``words``, longest first, shaped as a trie: at each position
    the engine follows one branch instead of trying every word (several times faster than a
    flat alternation of a few hundred encoded forms).

    >>> _trie_pattern({"abc", "abd", "ab"})
    'ab(?:c|d)?'
    """
    root: dict = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        parts = []
        for char in sorted(k for k in node if k):
            chain, child = re.escape(char), node[char]
            while len(child) == 1 and "" not in child:  # a run without branches: no group
                (char, child), = child.items()
                chain += re.escape(char)
            parts.append(chain + emit(child))
        if not parts:
            return ""
        group = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
        if "" in node:
            return (group if len(parts) > 1 else f"(?:{group})") + "?"
        return group

    return emit(root)


#: The process-wide redactor: the environment loader registers secrets here and every
#: output path (evidence, failure messages, reports, terminal summary) passes through it.
REDACTOR = Redactor()


def sink(value: Any) -> Any:
    """What opsgate writes out, redacted: the one place the run's outputs lose their secrets.

    Every sink passes through here: the report's document (as the last step before it is
    serialised), the terminal summary and gate lines, a check's pytest failure message, the
    exporters' files and the progress line. Code that *cuts* observed text (a probe's excerpt,
    an evidence bound) uses ``REDACTOR.excerpt`` instead, because a secret cut in half can no
    longer be recognised at the sink: cutting must be redaction-aware.

    >>> _ = REDACTOR.add("sink-secret-42")
    >>> sink("token sink-secret-42"), sink({"url": "https://u:sink-secret-42@h/"})
    ('token ***', {'url': 'https://u:***@h/'})
    """
    return REDACTOR.text(value) if isinstance(value, str) else REDACTOR.data(value)


def sink_document(document: dict) -> None:
    """The report's document redacted in place, as the last step before it is serialised
    (no second copy of a report of thousands of checks); see :func:`sink`.

    >>> _ = REDACTOR.add("sink-secret-43")
    >>> doc = {"tests": [{"message": "token sink-secret-43"}]}; sink_document(doc); doc
    {'tests': [{'message': 'token ***'}]}
    """
    REDACTOR.data_in_place(document)
