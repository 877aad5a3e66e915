"""Streaming video writers: H.264 MP4 (with the input's audio) and animated GIF, via PyAV.

Both take RGB frames one at a time, so memory does not grow with the video's length, and both
write under a temporary name that is renamed onto the final path only by `close()`: an
interrupted encode never leaves a truncated file behind.

    with Mp4Writer("overlay.mp4", fps=30, width=854, height=480, audio_from="in.mp4") as w:
        for frame in frames:
            w.write(frame)

`BackgroundEncoder` runs writers on a worker thread, so encoding overlaps with whatever
produces the frames (PyAV releases the GIL while encoding).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

from samtrack.errors import InputError
from samtrack.io.atomic import temp_path_for, writing

if TYPE_CHECKING:
    from typing_extensions import Self

# Audio codecs the MP4 muxer stores as they are; anything else (PCM, Vorbis, ...) is re-encoded to AAC.
MP4_COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})


def frame_rate(fps: float) -> Fraction:
    """An exact rational frame rate for a float fps (29.97 -> 30000/1001, 30.0 -> 30)."""
    if fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row/column when a side is odd (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class _StreamingWriter:
    """Common temp-file lifecycle: `close()` publishes the file, `abort()` deletes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_for(self.path)
        self._closed = False

    def _finish(self) -> None:
        """Flush encoders and close containers."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close containers without flushing (after an error)."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush, close, and move the finished file onto its final path."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def abort(self) -> None:
        """Stop without publishing anything. Never raises: it runs while another error is being reported."""
        if self._closed:
            return
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        """Close what is open and delete the temporary file, whatever closing says."""
        try:
            with suppress(Exception):  # after a failure closing fails too (e.g. no space for the trailer)
                self._release()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Mp4Writer(_StreamingWriter):
    """H.264 (libx264, yuv420p) MP4 at a given frame rate, optionally with another file's audio.

    Args:
        path: the .mp4 to write.
        fps: frame rate of the output.
        width, height: frame size; odd sizes are padded by one edge row/column.
        audio_from: a media file whose first audio stream is copied into the MP4 (re-encoded to
            AAC when MP4 cannot hold its codec); audio past the video's end is dropped.
        audio_offset: time in seconds in `audio_from` that lines up with the first video frame
            (the source's `start_time`).
        crf, preset: libx264 quality (lower = better) and speed; "superfast" costs about 40% less
            CPU than "veryfast" on 480p overlays for about 10% larger files.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int, *,
                 audio_from: str | os.PathLike[str] | None = None, audio_offset: float = 0.0,
                 crf: int = 20, preset: str = "superfast") -> None:
        super().__init__(path)
        self.rate = frame_rate(fps)
        self.width, self.height = width, height
        self._count = 0
        self._out = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._out.add_stream("libx264", rate=self.rate,
                                           options={"crf": str(crf), "preset": preset})
        self._video.width = width + width % 2
        self._video.height = height + height % 2
        self._video.pix_fmt = "yuv420p"
        self._audio_in: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._copy = True
        self._offset = 0.0
        if audio_from is not None:
            try:
                self._open_audio(Path(audio_from), audio_offset)
            except BaseException:
                self.abort()
                raise

    def _open_audio(self, source: Path, offset: float) -> None:
        self._audio_source = source
        try:
            self._audio_in = av.open(str(source))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read the audio of {source}: {exc}") from exc
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        stream = self._audio_in.streams.audio[0]
        self._offset = offset
        self._copy = stream.codec_context.name in MP4_COPY_AUDIO_CODECS
        if self._copy:
            self._audio = self._out.add_stream_from_template(stream, opaque=True)
        else:
            rate = stream.codec_context.sample_rate or 48000
            self._audio = self._out.add_stream("aac", rate=rate)
            self._audio.layout = "stereo" if stream.codec_context.channels > 1 else "mono"
            self._resampler = av.AudioResampler(format="fltp", layout=self._audio.layout, rate=rate,
                                                frame_size=1024)
            self._samples = 0
        self._audio_packets = iter(self._audio_in.demux(stream))

    def write(self, frame: np.ndarray) -> None:
        """Encode one H×W×3 uint8 RGB frame."""
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the video is {self.width}x{self.height}")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(frame)), format="rgb24")
        vf.pts = self._count
        vf.time_base = 1 / self.rate
        self._out.mux(self._video.encode(vf))
        self._count += 1
        self._mux_audio_until(float(self._count / self.rate))

    def _mux_audio_until(self, seconds: float) -> None:
        """Mux the input audio packets that start before `seconds` of output video time.

        Called after every video frame, so audio and video stay interleaved in the file and
        audio beyond the video's end is never written.
        """
        if self._audio_packets is None:
            return
        while True:
            try:
                packet = self._pending or next(self._audio_packets, None)
            except av.FFmpegError as exc:
                raise InputError(f"cannot read the audio of {self._audio_source}: {exc}; the file is "
                                 "corrupt (re-export it, or render without audio from its frames)") from exc
            self._pending = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.pts is None or packet.size == 0:
                continue
            start = float(packet.pts * packet.time_base) - self._offset
            if start >= seconds:
                self._pending = packet
                return
            if self._copy:
                self._mux_copied(packet, start)
            else:
                self._mux_transcoded(packet)

    def _mux_copied(self, packet: av.Packet, start: float) -> None:
        duration = float((packet.duration or 0) * packet.time_base)
        if start + duration <= 0:
            return  # entirely before the first video frame
        shift = round(self._offset / packet.time_base)
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self._audio
        self._out.mux(packet)

    def _mux_transcoded(self, packet: av.Packet) -> None:
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            raise InputError(f"cannot decode the audio of {self._audio_source}: {exc}; the file is corrupt "
                             "(re-export it, or render without audio from its frames)") from exc
        for frame in frames:
            self._encode_audio(self._resampler.resample(frame))

    def _encode_audio(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = self._samples
            frame.time_base = Fraction(1, frame.sample_rate)
            self._samples += frame.samples
            self._out.mux(self._audio.encode(frame))

    def _finish(self) -> None:
        duration = self._count / self.rate
        self._mux_audio_until(float(duration))
        self._out.mux(self._video.encode(None))
        if self._audio_in is not None and not self._copy:
            self._encode_audio(self._resampler.resample(None))
            self._out.mux(self._audio.encode(None))
        self._release()

    def _release(self) -> None:
        try:
            self._out.close()
        finally:
            if self._audio_in is not None:
                self._audio_in.close()
                self._audio_in = None


class GifWriter(_StreamingWriter):
    """Animated GIF with a palette quantised per frame, downscaled and frame-subsampled.

    GIFs of full-rate, full-size video are huge, so frames are resized to at most `max_width`
    pixels wide and only every `step`-th frame passed to `write` is kept (`step` chosen so the
    GIF plays at no more than `max_fps`, at the input's speed).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int, *,
                 max_width: int = 480, max_fps: float = 10.0) -> None:
        super().__init__(path)
        self.step = max(1, round(fps / max_fps))
        self.rate = frame_rate(fps) / self.step
        scale = min(1.0, max_width / width)
        self.size = (max(2, round(width * scale)), max(2, round(height * scale)))
        self._seen = 0
        self._count = 0
        self._out = av.open(str(self._tmp), mode="w", format="gif")
        self._stream = self._out.add_stream("gif", rate=self.rate)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "pal8"
        self._argb = np.full((256, 4), 255, dtype=np.uint8)

    def write(self, frame: np.ndarray) -> None:
        """Offer one H×W×3 uint8 RGB frame; every `step`-th is encoded."""
        keep = self._seen % self.step == 0
        self._seen += 1
        if not keep:
            return
        image = Image.fromarray(frame)
        if image.size != self.size:
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        quantised = image.quantize(256, method=Image.Quantize.FASTOCTREE)
        palette = np.frombuffer(bytes(quantised.getpalette() or []), dtype=np.uint8).reshape(-1, 3)
        self._argb[:, 1:] = 0
        self._argb[: len(palette), 1:] = palette[:256]
        vf = av.VideoFrame.from_ndarray((np.asarray(quantised), self._argb), format="pal8")
        vf.pts = self._count
        vf.time_base = 1 / self.rate
        self._out.mux(self._stream.encode(vf))
        self._count += 1

    def _finish(self) -> None:
        self._out.mux(self._stream.encode(None))
        self._out.close()

    def _release(self) -> None:
        self._out.close()


class BackgroundEncoder:
    """Feed frames to writers on a worker thread; `close()` finishes and publishes them all.

    At most `max_pending` frames wait in the queue (`write` blocks beyond that), so memory stays
    bounded. An encoding error is raised by the next `write` or by `close`.
    """

    def __init__(self, writers: Sequence[Mp4Writer | GifWriter], max_pending: int = 8) -> None:
        self.writers = list(writers)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max_pending)
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="samtrack-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    for writer in self.writers:
                        with writing(writer.path):
                            writer.write(frame)
                except Exception as exc:  # noqa: BLE001 - re-raised in the producer's thread
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, frame: np.ndarray) -> None:
        """Queue one RGB frame for every writer."""
        self._raise_error()
        self._queue.put(frame)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self) -> None:
        """Wait for the queued frames, then close (publish) every writer."""
        self._stop()
        try:
            self._raise_error()
            for writer in self.writers:
                with writing(writer.path):
                    writer.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop and delete every writer's unfinished file."""
        self._stop()
        for writer in self.writers:
            writer.abort()
