"""A camera as a user writes one: the Python standard library, numpy and tritonclient, nothing of ekya.

    python plain_camera.py --triton HOST:PORT --controller http://HOST:PORT --camera NAME \
        --frames DIR --windows N

It streams pre-recorded frames (DIR/w<window>.npz: `images` uint8 [N,H,W,3] crops and `frame` [N], the
frame each crop belongs to, counted from the window's start; `fps`) in real time on the deployment's
window clock, sends each due frame's crops to Triton's `infer` on the camera's model, and follows the
frame stride the controller publishes on its read-only endpoint (GET /v1/cameras/NAME). It prints one
JSON line: requests, failures, the strides and model versions it saw, how it followed each stride (frames
with crops and requests sent under it), and the modules it imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient


def directive(controller: str, camera: str) -> dict:
    with urllib.request.urlopen(f"{controller}/v1/cameras/{camera}", timeout=5) as response:
        return json.load(response)


def due(k: int, stride: float) -> bool:
    return stride <= 1.0 or k == 0 or int(k / stride) != int((k - 1) / stride)


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--triton", "--controller", "--camera", "--frames"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--windows", type=int, required=True)
    args = parser.parse_args()
    client = grpcclient.InferenceServerClient(args.triton)
    deadline = time.time() + 300
    while True:  # the controller publishes a camera's directive once its model serves
        try:
            current = directive(args.controller, args.camera)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    report = {"requests": 0, "failed": 0, "errors": [], "strides": [], "versions": []}
    followed: dict[float, list[int]] = {}  # stride -> [frames with crops, requests sent] under it
    window = max(0, int((time.time() - current["t0"]) // current["window_seconds"]))
    last_poll = 0.0
    while window < args.windows:
        recorded = np.load(f"{args.frames}/w{window}.npz")
        images, frames, fps = recorded["images"], recorded["frame"], float(recorded["fps"])
        start = current["t0"] + window * current["window_seconds"]
        for k in range(int(frames.max()) + 1 if len(frames) else 0):
            time.sleep(max(0.0, start + k / fps - time.time()))
            if time.time() - last_poll > 1.0:
                last_poll = time.time()
                try:
                    current = directive(args.controller, args.camera)
                    report["strides"].append(current["stride"])
                except OSError:  # the controller restarting: keep following the last directive
                    pass
            crops = images[frames == k]
            if not len(crops):
                continue
            under = followed.setdefault(float(current["stride"]), [0, 0])
            under[0] += 1
            if not due(k, current["stride"]):
                continue
            under[1] += 1
            batch = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
            tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            report["requests"] += 1
            try:
                result = client.infer(args.camera, [tensor], request_id=f"{args.camera}/w{window}/f{k}",
                                      client_timeout=10)
                report["versions"].append(int(result.get_response().model_version or 0))
            except Exception as exc:  # counted: the test requires none
                report["failed"] += 1
                report["errors"].append(str(exc)[:200])
        window += 1
    report["strides"] = sorted(set(report["strides"]))
    report["versions"] = sorted(set(report["versions"]))
    report["followed"] = [[stride, frames, sent] for stride, (frames, sent) in sorted(followed.items())]
    report["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
