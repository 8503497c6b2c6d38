"""Distinct visitor counts that merge across rollup buckets.

A ``VisitorSketch`` holds the exact set of visitor ids while it is small and a
HyperLogLog of 2^``P`` one-byte registers beyond that. Rollup rows store sets of up to
``EXACT_LIMIT`` ids exactly (8 bytes each) and larger ones as registers, next to the exact
count of the bucket. Merging exact sketches stays exact, so small sites, short ranges and
single buckets (each day of a daily series) get exact counts.

Error bound of the HyperLogLog part: relative standard error 1.04 / sqrt(2^P) = 1.63 %
(P = 12); 99.7 % of estimates lie within ±4.9 % (three standard errors).
``tests/test_analytics_sketch.py`` checks that bound.
"""

import math
import struct

import numpy as np

P = 12
M = 1 << P
EXACT_LIMIT = 512  # ids; 4 KiB, the size of the registers
RELATIVE_STANDARD_ERROR = round(1.04 / math.sqrt(1 << P), 4)
_MASK64 = (1 << 64) - 1
_ALPHA = 0.7213 / (1 + 1.079 / M)
_HIGH = int.from_bytes(b"\x80" * M, "little")
_ONES = (1 << (8 * M)) - 1
_POWERS = [2.0**-r for r in range(66)]


def _mix(value: int) -> int:
    """splitmix64 finalizer: spreads any 64-bit id (even small test ids) over all bits."""
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def max_registers(x: int, y: int) -> int:
    """Byte-wise max of two register arrays held as little-endian ints (every register < 128), SWAR."""
    take_x = ((((x | _HIGH) - y) & _HIGH) >> 7) * 0xFF  # 0xFF in each byte where x ≥ y
    return (x & take_x) | (y & (_ONES ^ take_x))


def estimate(packed: int) -> int:
    registers = packed.to_bytes(M, "little")
    total = math.fsum(registers.count(r) * _POWERS[r] for r in range(66 - P))
    value = _ALPHA * M * M / total
    zeros = registers.count(0)
    if value <= 2.5 * M and zeros:
        value = M * math.log(M / zeros)  # linear counting for small cardinalities
    return round(value)


class VisitorSketch:
    """An exact set, or HyperLogLog registers; rollup bytes stay undecoded until merged."""

    __slots__ = ("ids", "registers", "_raw", "_known", "_bound")

    def __init__(self, ids=None):
        self.ids = set(ids) if ids is not None else set()
        self.registers = None  # once approximate: the register bytes as one little-endian int
        self._raw = None  # undecoded to_bytes() data
        self._known = None  # the exact count stored beside the bytes
        self._bound = None  # once approximate: the sum of the merged parts' exact counts (None: unknown)

    @classmethod
    def lazy(cls, data: bytes, known: int | None) -> "VisitorSketch":
        sketch = cls()
        sketch._raw, sketch._known, sketch.ids = bytes(data), known, None
        return sketch

    def _load(self) -> None:
        if self._raw is not None:
            self.ids, self.registers = _decode(self._raw)
            if self.registers is not None:
                self._bound = self._known  # the stored exact count bounds the registers' estimate
            self._raw = self._known = None

    def _state(self):
        """(ids, registers) without decoding in place: a merged-from sketch keeps its exact count."""
        return _decode(self._raw) if self._raw is not None else (self.ids, self.registers)

    @property
    def empty(self) -> bool:
        return self._raw is None and self.registers is None and not self.ids

    @property
    def exact(self) -> bool:
        self._load()
        return self.registers is None

    @property
    def estimated(self) -> bool:
        """Whether ``count()`` is a HyperLogLog estimate (a union beyond EXACT_LIMIT ids), without decoding."""
        if self._known is not None:
            return False  # one rollup row: its exact count was stored beside the bytes
        if self._raw is not None:
            return self._raw[:1] == b"H"
        return self.registers is not None

    def upper_bound(self) -> int | None:
        """A count the set cannot exceed, known without estimating: its exact count, or the sum
        of the exact counts of the parts merged into it (None: registers of unknown parts)."""
        if self._known is not None:
            return self._known
        ids, registers = self._state()
        return len(ids) if registers is None else self._bound

    def add(self, visitor: int) -> None:
        self._load()
        if self.registers is None:
            self.ids.add(visitor)
        else:
            self.registers = _with_ids(self.registers, [visitor])
            if self._bound is not None:
                self._bound += 1

    def merge(self, other: "VisitorSketch") -> None:
        """Union ``other`` into this sketch (``other`` is left as it was)."""
        if other.empty:
            return
        if self.empty and other._raw is not None:  # adopt the bytes; decode only if merged again
            self.ids, self._raw, self._known, self._bound = None, other._raw, other._known, other._bound
            return
        self._load()
        mine, theirs = self.upper_bound(), other.upper_bound()
        self._bound = None if mine is None or theirs is None else mine + theirs
        other_ids, other_registers = other._state()
        if self.registers is None and other_registers is None:
            self.ids |= other_ids
        elif self.registers is None:
            self.registers, self.ids = _with_ids(other_registers, self.ids), None
        elif other_registers is None:
            self.registers = _with_ids(self.registers, other_ids)
        else:
            self.registers = max_registers(self.registers, other_registers)

    def count(self) -> int:
        """The exact count, or the estimate clamped to ``upper_bound``: a union never counts more
        visitors than its parts hold together."""
        if self._known is not None:
            return self._known
        self._load()
        if self.registers is None:
            return len(self.ids)
        value = estimate(self.registers)
        return value if self._bound is None else min(value, self._bound)

    @classmethod
    def of_distinct(cls, ids: np.ndarray) -> "VisitorSketch":
        """The sketch of distinct int64 ids (each once), built in one vectorised step: the same
        bytes ``to_bytes`` stores for them, and their exact count."""
        if len(ids) <= EXACT_LIMIT:
            data = b"E" + np.sort(ids).astype("<i8").tobytes()
        else:
            data = b"H" + _registers_of(ids).tobytes()
        return cls.lazy(data, len(ids))

    def to_bytes(self) -> bytes:
        """Sets up to EXACT_LIMIT ids as packed ids, larger ones as registers."""
        if self._raw is not None:  # undecoded bytes are already in this format
            return self._raw
        self._load()
        if self.registers is None and len(self.ids) <= EXACT_LIMIT:
            return b"E" + struct.pack(f"<{len(self.ids)}q", *sorted(self.ids))
        registers = self.registers if self.registers is not None else _with_ids(0, self.ids)
        return b"H" + registers.to_bytes(M, "little")

    @classmethod
    def from_bytes(cls, data: bytes) -> "VisitorSketch":
        sketch = cls.lazy(data, None)
        sketch._load()
        return sketch


def _decode(raw: bytes):
    if raw[:1] == b"H":
        return None, int.from_bytes(raw[1:], "little")
    return set(struct.unpack(f"<{(len(raw) - 1) // 8}q", raw[1:])), None


def _with_ids(registers: int, ids) -> int:
    out = bytearray(registers.to_bytes(M, "little"))
    for visitor in ids:
        h = _mix(visitor)
        index = h & (M - 1)
        rank = (64 - P) - (h >> P).bit_length() + 1
        if rank > out[index]:
            out[index] = rank
    return int.from_bytes(out, "little")


_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _registers_of(ids: np.ndarray) -> np.ndarray:
    """``_with_ids(0, ids)`` for an int64 array, as M uint8 registers (numpy wraps uint64 products)."""
    z = np.asarray(ids, dtype=np.int64).view(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    z = z ^ (z >> np.uint64(31))
    index = (z & np.uint64(M - 1)).astype(np.intp)
    # bit_length of the high bits (< 2^52, exact as float64) is frexp's exponent
    _, bits = np.frexp((z >> np.uint64(P)).astype(np.float64))
    keyed = np.sort(index * 64 + ((64 - P) + 1 - bits))  # by register, then rank (< 64)
    register = keyed >> 6
    highest = np.append(register[1:] != register[:-1], True)  # each register's last, highest rank
    registers = np.zeros(M, dtype=np.uint8)
    registers[register[highest]] = keyed[highest] & 63
    return registers
