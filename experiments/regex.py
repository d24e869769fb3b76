"""Regular expressions over attributes that SDK clients send: linear time, bounded work. Pure.

Targeting conditions (``$regex``) run a pattern saved by a product manager against an attribute that
any SDK client controls. Python's ``re`` backtracks: ``^(a+)+$`` against thirty ``a`` and a ``!``
takes minutes and holds the interpreter lock meanwhile, so one flag and one request could stall a
whole server. Patterns here run on RE2 (``google-re2``), whose automata match in time linear in
the text, and the work per match is bounded three ways:

- the pattern is at most ``MAX_PATTERN_LENGTH`` (512) characters and compiles to at most
  ``MAX_PROGRAM_SIZE`` (5000) RE2 instructions: counted repetitions such as ``(.{0,100}){10}``
  expand into programs whose matching cost grows with their size (a Unicode class such as ``\\pL``
  takes about 1200 instructions, and costs little);
- the text is at most ``MAX_SUBJECT_LENGTH`` (1024) characters: a longer string does not match;
- RE2 itself refuses what it cannot run in linear time: backreferences (``\\1``), lookarounds
  (``(?=``, ``(?<=``, ``(?!``), possessive and atomic groups, ``\\Z`` (RE2 spells it ``\\z``), the
  ``(?x)`` verbose flag. ``regex_compile`` raises ``RegexError`` with RE2's reason, so saving such
  a condition is refused (400, and an error on the admin form) instead of failing later.

Syntax is RE2's (https://github.com/google/re2/wiki/Syntax), close to Python's for everyday
patterns: ``(?i)`` for case-insensitive, ``^``/``$`` anchor the whole text (no multi-line unless
``(?m)``), ``\\d``/``\\w``/``\\s`` are ASCII-only, ``\\pL`` and ``[[:alpha:]]`` exist.

Measured on the development machine within these bounds, the slowest patterns found (such as
``(.?){400}a{400}``) take up to about 20 ms on a 1024-character text; everyday patterns take a few
microseconds. A backtracking engine took 17 s on 29 characters of ``^(a+)+$``.

One function, ``regex_compile``, so the engine choice holds for every operator that needs a regex
(``$regex`` today; ``$regexi`` is ``ignore_case=True``).
"""

from __future__ import annotations

from collections.abc import Callable

import re2

# The pybind11 core of google-re2. Its public ``re``-like wrapper builds a match object with
# character offsets in Python on every search (about 10 us); a yes/no answer needs none of that,
# and the core's ``Match`` answers in about 2 us. Pinned with the package (``<2`` in pyproject.toml),
# and ``tests/experiments/test_regex.py`` exercises it.
from re2 import _re2

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_PROGRAM_SIZE",
    "MAX_SUBJECT_LENGTH",
    "RegexError",
    "TextPredicate",
    "regex_compile",
]

MAX_PATTERN_LENGTH = 512
MAX_PROGRAM_SIZE = 5000
MAX_SUBJECT_LENGTH = 1024

TextPredicate = Callable[[str], bool]

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class RegexError(ValueError):
    """A pattern that RE2 cannot run, or one past the bounds; the message says why."""


def _options(*, ignore_case: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.never_capture = True  # a yes/no answer needs no groups, and runs faster without them
    options.case_sensitive = not ignore_case
    return options


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (JSON allows "\ud800"): each becomes U+FFFD, as JavaScript's TextEncoder does.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def regex_compile(pattern: str, *, ignore_case: bool = False) -> TextPredicate:
    """A predicate telling whether ``pattern`` occurs anywhere in a string (RE2 syntax).

    Raises ``RegexError`` for a pattern RE2 cannot run or one past the bounds in the module
    docstring. The predicate never raises: a string longer than ``MAX_SUBJECT_LENGTH`` characters
    does not match.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"the pattern is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH}")
    compiled = _re2.RE2(_utf8(pattern), _options(ignore_case=ignore_case))
    if not compiled.ok():
        reason = compiled.error()
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(
            f"not a pattern the linear-time engine (RE2) can run: {reason}. Backreferences, "
            "lookarounds and atomic groups are not supported"
        )
    size = compiled.ProgramSize()
    if size > MAX_PROGRAM_SIZE:
        raise RegexError(
            f"the pattern is too complex ({size} RE2 instructions; at most {MAX_PROGRAM_SIZE}): "
            "use smaller counted repetitions, e.g. + instead of {0,500}"
        )
    match = compiled.Match

    def search(text: str) -> bool:
        if len(text) > MAX_SUBJECT_LENGTH:
            return False
        data = _utf8(text)
        return match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    return search
