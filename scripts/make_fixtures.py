"""Regenerates the committed speech fixtures (tests/fixtures/audio) with espeak-ng; run once, commit the output.

Needs `espeak-ng` on PATH (apt-get install espeak-ng). CI does not run this: the files are committed.
Voice en-us+f2 at 130 words/min was chosen because pocketsphinx recognises these sentences from it word for word.
"""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import av
import numpy as np
import soxr

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
RATE = 16000
VOICE, SPEED = "en-us+f2", 130
SENTENCES = {
    "doctor": "Please call the doctor tomorrow morning.",
    "garden": "We need more water for the garden.",
    "pizza": "I would like to order a large pizza with cheese.",
}
OPUS_COPY = "doctor"  # the same speech in a compressed container, to test the PyAV path


def synthesise(text: str) -> np.ndarray:
    """espeak-ng speech → 16 kHz mono int16, with 0.25 s of silence before and 0.5 s after."""
    wav = subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "--stdout", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE)
    speech = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return np.concatenate([np.zeros(RATE // 4, np.int16), speech, np.zeros(RATE // 2, np.int16)])


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def write_ogg_opus(path: Path, pcm: np.ndarray) -> None:
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.bit_rate = 32000
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in SENTENCES.items():
        pcm = synthesise(text)
        write_wav(OUT / f"{name}.wav", pcm)
        (OUT / f"{name}.txt").write_text(text + "\n")
        if name == OPUS_COPY:
            write_ogg_opus(OUT / f"{name}.ogg", pcm)
        print(f"{name}: {len(pcm) / RATE:.2f} s")


if __name__ == "__main__":
    main()
