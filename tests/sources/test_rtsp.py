"""RTSP on loopback, FFmpeg on both ends: the camera is the RTSP server (`options: {rtsp_flags: listen}`)
and an encoder pushes a real H.264 video to it (RTSP ANNOUNCE/RECORD, RTP over TCP), as encoders and
cameras set to push do. The encoder stops (the stream is cut) and comes back: the camera is reported down,
listens again, takes the new stream, and the gap and the reconnect are counted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controller.triton.server import free_port
from sources import SourceContext, source_kind
from sources.video import VideoSource
from tests.sources.video_helpers import scene_video
from trainer.streams.scene import SceneSpec

SCENE = SceneSpec(width=320, height=240, fps=10, seconds=2, objects=2, object_size=40, seed=2)


def push_once(path: Path, url: str, connect_within_s: float = 10.0) -> None:
    """Push the file to `url` once, in real time (connecting as soon as the camera listens)."""
    import av

    deadline = time.monotonic() + connect_within_s
    with av.open(str(path)) as source:
        video = source.streams.video[0]
        while True:
            try:
                out = av.open(url, "w", format="rtsp", options={"rtsp_transport": "tcp"})
                stream = out.add_stream_from_template(video)
                break
            except OSError:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        started = time.monotonic()
        try:
            for packet in source.demux(video):
                if packet.dts is None:
                    continue
                due = float(packet.pts * video.time_base) if packet.pts is not None else 0.0
                time.sleep(max(0.0, started + due - time.monotonic()))
                packet.stream = stream
                out.mux(packet)
        finally:
            out.close()


@pytest.mark.slow
def test_an_rtsp_push_is_received_cut_and_taken_again(tmp_path: Path) -> None:
    video = tmp_path / "push.mp4"
    scene_video(video, SCENE)
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    source = VideoSource.model_validate({"kind": "video", "url": url, "options": {"rtsp_flags": "listen", "analyzeduration": "500000"},
                                         "open_timeout_s": 20, "read_timeout_s": 2, "max_backoff_s": 1,
                                         "detector": {"min_area": 100}})
    reader = source_kind("video").open(source, SourceContext(camera="gate", crop_size=16, window_seconds=10.0,
                                                             history_windows=1))
    reader.start()
    frames: list = []

    def take(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            frame = reader.next_frame(0.2)
            if frame is not None:
                frames.append(frame)

    try:
        pusher = threading.Thread(target=push_once, args=(video, url))
        pusher.start()
        take(SCENE.seconds + 2.0)  # FFmpeg reads ~0.8 s of a new stream before the first frame (analyzeduration)
        pusher.join(10)
        first = len(frames)
        assert first >= 0.7 * SCENE.frames, first  # the pushed frames arrived at the stream's rate
        assert reader.health().width == 320
        take(1.5)  # the encoder is gone: the camera is down, listening again
        down = reader.health()
        assert not down.up and down.last_error, down
        pusher = threading.Thread(target=push_once, args=(video, url))
        pusher.start()
        take(SCENE.seconds + 2.0)
        pusher.join(10)
        health = reader.health()
    finally:
        reader.close()
    assert len(frames) - first >= 0.7 * SCENE.frames, (first, len(frames))  # the second push was taken too
    assert health.reconnects >= 1 and health.gap_seconds >= 1.0, health
    assert sum(len(f.crops) for f in frames) > 0  # the detector ran on the received frames
