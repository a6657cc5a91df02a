"""Fuzz: Avro decoding of random and mutated frames raises only typed ``CodecError``."""

from __future__ import annotations

import contextlib
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from qbridge.contracts import AvroCodec
from qbridge.errors import CodecError
from qbridge.samples import problem_request, sample_mix
from qbridge.topics import PROBLEM_REQUESTS
from tests.fuzz.recipe import Recipe


@cache
def _valid_frames(codec: AvroCodec) -> tuple[bytes, ...]:
    """Valid requests of every problem type (the small samples: mutations stay cheap)."""
    frames = [
        codec.encode(PROBLEM_REQUESTS.record, problem_request(p, request_id=f"r{i}"))
        for i, (_, p, _) in enumerate(sample_mix())
    ]
    return tuple(sorted(frames, key=len)[:6])


def _frame(codec: AvroCodec, r: Recipe) -> bytes:
    if r.chance(3):
        # A framing header with a (mostly known) schema id, then random bytes.
        header = bytes([0 if not r.chance(8) else r.byte()]) + bytes([0, 0, 0, r.below(40)])
        return header + r.data[r.pos :]
    data = bytearray(r.pick(_valid_frames(codec)))
    for _ in range(1 + r.below(4)):
        at = (r.byte() << 8 | r.byte()) % (len(data) + 1)
        chunk = bytes(r.byte() for _ in range(1 + r.below(8)))
        op = r.below(4)
        if op == 0:  # overwrite
            data[at : at + len(chunk)] = chunk
        elif op == 1:  # insert
            data[at:at] = chunk
        elif op == 2:  # delete
            del data[at : at + len(chunk)]
        else:  # truncate
            del data[at:]
    return bytes(data)


@given(st.binary(max_size=96))
def test_random_and_mutated_frames_decode_or_raise_codec_error(
    codec: AvroCodec, data: bytes
) -> None:
    frame = _frame(codec, Recipe(data))
    with contextlib.suppress(CodecError):  # any other exception fails the test
        codec.decode(frame, expected_subject=PROBLEM_REQUESTS.record)
