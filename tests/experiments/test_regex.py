"""Regular expressions over client-sent attributes: linear time, bounded, refused when RE2 cannot run them."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.regex import (
    MAX_PROGRAM_SIZE,
    MAX_SUBJECT_LENGTH,
    RegexError,
    regex_compile,
)

ROOT = Path(__file__).resolve().parents[2]

# Patterns that take exponential time (or near enough) on a backtracking engine such as Python's re,
# with the texts that trigger it. With re, the first took 17 s at 29 characters (issue 11) and
# doubles with each character; the texts below would take days.
CATASTROPHIC = [
    (r"^(a+)+$", "a" * 40 + "!"),
    (r"^(a|aa)+$", "a" * 60 + "!"),
    (r"^(\w+\s?)+$", "word " * 200 + "!"),
    (r"(.*a){20}", "a" * MAX_SUBJECT_LENGTH),  # at the bound: RE2 matches it in linear time
    (r"(.*a){20}", "a" * 900_000),  # the 900 KB attribute that killed the worker: past the bound
    (r"^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 1000 + "!"),
]


def test_regex_compile__catastrophic_patterns__answer_at_once():
    # A separate process, bounded by a generous timeout (not a timing assert): with a backtracking
    # engine it would run for days and the timeout fails the test; with RE2 it answers in milliseconds.
    script = textwrap.dedent(
        """
        import json, sys
        from experiments.conditions import compile_condition
        cases = json.loads(sys.stdin.read())
        answers = [compile_condition({"email": {"$regex": p}})({"email": text}) for p, text in cases]
        print(json.dumps(answers))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(CATASTROPHIC),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [False, False, False, True, False, False]


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"@example\.com$", "ada@example.com", True),
        (r"@example\.com$", "ada@example.com.evil", False),
        (r"^ada", "ada@example.com", True),
        (r"(?i)^ADA", "ada@example.com", True),
        ("^$", "", True),
        (r"^\pL+$", "ünïcødé", True),
        (r"^.{3}$", "日本語", True),  # characters, not bytes
        (r"\d", "\u0663", False),  # RE2's \d is ASCII only
        (r"^abc$", "abc\n", False),  # $ is the end of the text, not before a final newline
    ],
)
def test_regex_compile__re2_syntax__searches_anywhere(pattern: str, text: str, expected: bool):
    assert regex_compile(pattern)(text) is expected


def test_regex_compile__ignore_case__matches_other_case():
    assert regex_compile("^ADA", ignore_case=True)("ada") is True
    assert regex_compile("^ADA")("ada") is False


def test_regex_compile__text_past_the_bound__no_match_and_no_work():
    search = regex_compile("a")
    assert search("a" * MAX_SUBJECT_LENGTH) is True
    assert search("a" * (MAX_SUBJECT_LENGTH + 1)) is False


def test_regex_compile__lone_surrogate_in_text__answers_never_raises():
    assert regex_compile("@example")("\ud800@example.com") is True
    assert regex_compile("^x$")("\udfff") is False


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        (r"(a)\1", "invalid escape sequence"),
        (r"(?=a)", "invalid perl operator"),
        (r"(?<=a)b", "invalid perl operator"),
        (r"a++", "bad repetition operator"),
        (r"(unclosed", "missing )"),
        ("a" * 513, "at most 512"),
        ("(.{0,100}){10}", f"at most {MAX_PROGRAM_SIZE}"),
    ],
)
def test_regex_compile__pattern_re2_cannot_run__refused_with_the_reason(pattern: str, fragment: str):
    with pytest.raises(RegexError) as caught:
        regex_compile(pattern)
    assert fragment in str(caught.value)


def test_regex_compile__lone_surrogate_in_pattern__read_as_replacement_character():
    assert regex_compile("^\ud800$")("\udfff") is True
