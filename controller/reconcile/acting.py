"""Applying a plan: the diff between what the plan wants and what is applied, acted on. Each camera's
inference share becomes Triton instances and a frame stride told to the camera; each training share
starts a trainer (or changes a running one's share)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from controller.planner import Plan
from controller.planner.instances import instances_for_share
from controller.planner.objective import equal_split
from controller.reconcile.context import WindowContext
from controller.reconcile.ports import GpuMemoryError
from controller.reconcile.scope import Scope
from trainer.configs import RetrainConfig

log = logging.getLogger("controller")

MAX_STRIDE = 1000  # "no inference": a camera with no share processes (almost) nothing


class PlanApplier:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def apply(self, context: WindowContext, plan: Plan) -> None:
        scope = self.scope
        running = {r.camera: r for r in scope.trainers.running()}
        for alloc in plan.allocations:
            name = alloc.camera
            cam = scope.state.cameras[name]
            self.set_inference(name, alloc.inference_share, alloc.inference_device)
            cam.training_share = alloc.training_share
            if name in running:
                if alloc.training_share > 0:
                    scope.trainers.set_share(running[name].job_id, alloc.training_share)
                continue
            cam.config = alloc.config
            if (alloc.config and alloc.training_share > 0 and name in context.data
                    and name not in context.finished and name not in context.started_jobs):
                self.start_job(context, name, alloc.config, alloc.training_share, alloc.training_device)
            scope.observe(name)

    def hand_on_finished_shares(self, context: WindowContext) -> None:
        """A static scheduler's rule when jobs finish: their shares split equally over the running trainers
        and all inference jobs."""
        if context.plan is None:
            return
        scope = self.scope
        newly = [a for a in context.plan.allocations
                 if a.camera in context.finished and a.camera not in context.redistributed]
        context.redistributed.update(a.camera for a in newly)
        running = scope.trainers.running()
        bonus = equal_split(sum(a.training_share for a in newly), len(running), len(context.plan.allocations))
        if bonus <= 0:
            return
        for alloc in context.plan.allocations:
            self.set_inference(alloc.camera, scope.state.cameras[alloc.camera].inference_share + bonus)
        for job in running:
            scope.trainers.set_share(job.job_id, job.share + bonus)

    def set_inference(self, name: str, share: float, device: int | None = None) -> None:
        scope = self.scope
        cam = scope.state.cameras[name]
        cam.inference_share = share
        raw = scope.inference.stride(share)
        stride = float(MAX_STRIDE) if not math.isfinite(raw) else round(max(1.0, min(MAX_STRIDE, raw)), 3)
        instances = instances_for_share(share, scope.inference.full_share, scope.config.inference.max_instances,
                                        cores=None if scope.gpu else scope.cores)
        if stride != cam.stride:
            cam.stride = stride
            scope.tell_camera(name)
        gpus = None
        if scope.gpu and device is not None:  # pin the camera's Triton instances to the plan's device
            devices = scope.config.resources.device_indices
            gpus = (devices[device] if device < len(devices) else devices[0],)
        if instances != cam.instances or gpus is not None:
            try:
                scope.serving.set_instances(name, instances, gpus)
                cam.instances = instances
            except Exception as exc:  # serving goes on with the old count
                log.error("%s: could not set %d instances: %s", name, instances, exc)

    def start_job(self, context: WindowContext, name: str, config_name: str, share: float,
                  device_index: int | None) -> None:
        scope = self.scope
        cam = scope.state.cameras[name]
        train, test = context.data[name]
        option = context.options.get(name, {}).get(config_name)
        config = scope.configs.get(config_name) or RetrainConfig.from_name(config_name)
        try:
            device = scope.choose_device(device_index)
        except GpuMemoryError as exc:  # not started: the camera keeps serving its model this window
            context.started_jobs.add(name)
            scope.events.trainer_failed(name, context.window, "oom", f"trainer not started: {exc}")
            return
        job_id = f"{name}-w{context.window}-{config_name}-{int(time.time() * 1000) % 10**8}"
        record = scope.trainers.launch(
            job_id=job_id, camera=name, window=context.window, config=config,
            base_checkpoint=Path(cam.serving_checkpoint or ""),
            data=train, validation=test, share=share, device=device,
            predicted_accuracy=option.end_accuracy if option else None,
            predicted_seconds=context.cost.undo(option.gpu_seconds) if option else None,
            cost_scale=context.cost.scale, cost_overhead=context.cost.overhead)
        scope.state.jobs[job_id] = record
        context.started_jobs.add(name)
        scope.metrics.set_retraining_config(name, config_name, config.model_dump())
