"""An independent reference for ``experiments.bucketing.bucket``, written from its documented algorithm.

SHA-256 is implemented here from FIPS 180-4 in plain Python (no ``hashlib``), and the digest is turned
into a fraction with integer arithmetic and ``fractions.Fraction``, so a test comparing the two checks
the documentation as much as the code. Slow: for samples, not for 100,000 ids.
"""

from fractions import Fraction

_K = [
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
]  # fmt: skip
_H0 = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
_MASK = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


def sha256_reference(message: bytes) -> bytes:
    """SHA-256 of ``message`` (FIPS 180-4, section 6.2)."""
    length_bits = len(message) * 8
    padded = message + b"\x80" + b"\x00" * ((55 - len(message)) % 64) + length_bits.to_bytes(8, "big")
    h = list(_H0)
    for offset in range(0, len(padded), 64):
        w = [int.from_bytes(padded[offset + 4 * i : offset + 4 * i + 4], "big") for i in range(16)]
        for t in range(16, 64):
            s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w.append((w[t - 16] + s0 + w[t - 7] + s1) & _MASK)
        a, b, c, d, e, f, g, hh = h
        for t in range(64):
            sigma1 = _rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)
            choose = (e & f) ^ (~e & g)
            t1 = (hh + sigma1 + choose + _K[t] + w[t]) & _MASK
            sigma0 = _rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)
            majority = (a & b) ^ (a & c) ^ (b & c)
            t2 = (sigma0 + majority) & _MASK
            a, b, c, d, e, f, g, hh = (t1 + t2) & _MASK, a, b, c, (d + t1) & _MASK, e, f, g
        h = [(x + y) & _MASK for x, y in zip(h, [a, b, c, d, e, f, g, hh], strict=True)]
    return b"".join(x.to_bytes(4, "big") for x in h)


def reference_bucket(seed: str, unit_id: str) -> Fraction:
    """The documented bucket as an exact fraction: top 53 bits of SHA-256(seed U+001F unit_id) / 2**53."""
    digest = sha256_reference(f"{seed}\x1f{unit_id}".encode())
    return Fraction(int.from_bytes(digest[:8], "big") >> 11, 2**53)
