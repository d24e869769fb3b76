"""An independent reference for ``experiments.bucketing.bucket``, written from GrowthBook's specification.

FNV-1a is written here from its published definition (offset basis 2166136261, prime 16777619, XOR
then multiply, modulo 2**32) over UTF-16 code units taken from ``str.encode("utf-16-le")`` two bytes at
a time, and the bucket is an exact ``fractions.Fraction``, so a test comparing the two checks the
documentation as much as the code.
"""

from fractions import Fraction

FNV_OFFSET_BASIS = 2166136261
FNV_PRIME = 16777619


def fnv1a32_reference(text: str) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``text`` (JavaScript's ``charCodeAt``)."""
    data = text.encode("utf-16-le", "surrogatepass")
    value = FNV_OFFSET_BASIS
    for i in range(0, len(data), 2):
        code_unit = data[i] + 256 * data[i + 1]
        value = (value ^ code_unit) * FNV_PRIME % 2**32
    return value


def reference_bucket(seed: str, unit_id: str, version: int = 2) -> Fraction:
    """GrowthBook's ``hash`` as an exact fraction: version 2 by default, version 1 for namespaces."""
    if version == 1:
        return Fraction(fnv1a32_reference(unit_id + seed) % 1000, 1000)
    return Fraction(fnv1a32_reference(str(fnv1a32_reference(seed + unit_id))) % 10000, 10000)
