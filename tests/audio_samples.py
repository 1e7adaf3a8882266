"""Tiny audio files made on the spot: a WAV from the ``wave`` module and MP3 frames by hand."""

from __future__ import annotations

import base64
import io
import struct
import wave


def wav(seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> bytes:
    """Silence as 16-bit PCM WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * channels * int(seconds * rate))
    return buffer.getvalue()


# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no CRC, stereo: 417-byte frames of 1152 samples.
MP3_HEADER = b"\xff\xfb\x90\x00"
MP3_FRAME = 417


def mp3(frames: int = 20, id3: bool = False, xing_frames: int | None = None) -> bytes:
    """Constant-bitrate frames (their audio is zeros); optionally an ID3v2 tag in front and an
    ``Xing`` header, counting ``xing_frames``, in the first frame."""
    body = bytearray()
    for i in range(frames):
        frame = bytearray(MP3_HEADER + bytes(MP3_FRAME - 4))
        if i == 0 and xing_frames is not None:
            frame[36:48] = b"Xing" + struct.pack(">II", 1, xing_frames)
        body += frame
    if id3:
        tag = b"TIT2" + struct.pack(">I", 6) + b"\0\0" + b"\0hello"
        body = bytearray(b"ID3\x04\x00\x00" + bytes([0, 0, 0, len(tag)]) + tag) + body
    return bytes(body)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
