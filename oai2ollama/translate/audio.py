"""Audio as Ollama takes it: raw bytes in a message's ``images``, told apart by their content.

Ollama recognises WAV (a ``RIFF``/``WAVE`` header) and MP3 (an ID3 tag or an MPEG frame sync)
and nothing else, so those are the formats checked here. Pure functions only.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

from ..errors import InvalidRequest
from .validate import invalid_type

FORMATS = ("wav", "mp3")

# The capability Ollama reports (``/api/show``) for models that listen.
CAPABILITY = "audio"


def sniff(data: bytes) -> str | None:
    """``"wav"`` or ``"mp3"`` when the bytes look like one, as Ollama's runner decides it."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def decode_base64(data: str) -> bytes:
    """Standard base64, line breaks allowed (as Go's decoder allows them); ValueError if bad."""
    cleaned = data.replace("\r", "").replace("\n", "")
    try:
        return binascii.a2b_base64(cleaned, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def encode_base64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode()


def input_audio(part: dict[str, Any], param: str) -> str:
    """An OpenAI ``input_audio`` part (chat or Responses) → the base64 string for ``images``."""
    audio = part.get("input_audio")
    param = f"{param}.input_audio"
    if not isinstance(audio, dict):
        raise invalid_type(param, "an object", audio)
    fmt = audio.get("format")
    if fmt not in FORMATS:
        raise InvalidRequest(
            f"Invalid value for '{param}.format': {fmt!r}. Supported values: 'wav' and 'mp3'.",
            param=f"{param}.format",
            code="invalid_value",
        )
    data = audio.get("data")
    if not isinstance(data, str):
        raise invalid_type(f"{param}.data", "a base64 string", data)
    try:
        raw = decode_base64(data)
    except ValueError as exc:
        raise InvalidRequest(
            f"Invalid base64 audio data in '{param}.data' ({exc}).",
            param=f"{param}.data",
            code="invalid_value",
        ) from None
    if not raw or sniff(raw) is None:
        raise InvalidRequest(
            f"The audio in '{param}.data' is not WAV or MP3 data: Ollama recognises WAV "
            "(RIFF/WAVE) and MP3 by their content.",
            param=f"{param}.data",
            code="invalid_value",
        )
    return data.replace("\r", "").replace("\n", "")  # Ollama's native side wants one line


# --------------------------------------------------------------------------------------------
# Duration, for ``verbose_json``: read from the headers, never by decoding the audio.


def duration(data: bytes) -> float | None:
    """The length of WAV or MP3 audio in seconds; None when the headers do not say."""
    kind = sniff(data)
    if kind == "wav":
        return _wav_duration(data)
    if kind == "mp3":
        return _mp3_duration(data)
    return None


def _wav_duration(data: bytes) -> float | None:
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(data):
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk == b"data":
            if not byte_rate:
                return None
            size = min(size, len(data) - body)  # a streamed WAV may not know its length
            return size / byte_rate
        pos = body + size + (size & 1)  # chunks are padded to an even length
    return None


_BITRATES = {  # kbit/s by (MPEG-1?, layer) and bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_duration(data: bytes) -> float | None:
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for byte in data[6:10]:  # a "syncsafe" integer: 7 bits a byte
            size = (size << 7) | (byte & 0x7F)
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    end = len(data) - (128 if data[-128:-125] == b"TAG" else 0)
    for pos in range(start, min(end - 4, start + 65536)):
        if data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
            continue
        header = _frame_header(data[pos : pos + 4])
        if header is not None:
            return _frames_duration(data, pos, end, *header)
    return None


def _frame_header(head: bytes) -> tuple[int, int, int, int] | None:
    """(bitrate in bit/s, sample rate, samples per frame, side-information length)"""
    version, layer_bits = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate_index, rate_index = head[2] >> 4, (head[2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    table = _BITRATES[(True, layer) if mpeg1 else (False, 1 if layer == 1 else 2)]
    bitrate = table[bitrate_index - 1] * 1000
    rate = _RATES[version][rate_index]
    samples = 384 if layer == 1 else (1152 if mpeg1 or layer == 2 else 576)
    mono = head[3] >> 6 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return bitrate, rate, samples, side


def _frames_duration(
    data: bytes, pos: int, end: int, bitrate: int, rate: int, samples: int, side: int
) -> float:
    """A Xing/Info or VBRI header counts the frames (variable bitrate); else constant bitrate."""
    tag = pos + 4 + side
    if data[tag : tag + 4] in (b"Xing", b"Info") and len(data) >= tag + 12:
        flags = struct.unpack_from(">I", data, tag + 4)[0]
        if flags & 1:
            return struct.unpack_from(">I", data, tag + 8)[0] * samples / rate
    vbri = pos + 36
    if data[vbri : vbri + 4] == b"VBRI" and len(data) >= vbri + 18:
        return struct.unpack_from(">I", data, vbri + 14)[0] * samples / rate
    return (end - pos) * 8 / bitrate
