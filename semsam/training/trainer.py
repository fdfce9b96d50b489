"""The training loop: multi-choice learning on mixed datasets, atomic checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import pickle
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from semsam.build import (build_model, load_backbone, transfer_heads, with_new_parts, with_rank_head,
                          without_rank_head)
from semsam.checkpoint import load_tensors, read_checkpoint, save_checkpoint
from semsam.config import SemanticInfo
from semsam.data import SegmentationRecord, build_dataset
from semsam.data.prompts import prepare_batch
from semsam.evaluation.click import evaluate_clicks
from semsam.io import remove_stale_temps, write_atomic
from semsam.modeling import SemanticSam
from semsam.predictor import Predictor
from semsam.text import TextEncoder
from semsam.training import distributed
from semsam.training.config import TrainConfig, as_dict, same_run
from semsam.training.losses import LossWeights, MultiChoiceLoss
from semsam.training.step import TrainingForward, resolve_precision, to_device
from semsam.training.vocabulary import Vocabulary

STATE_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"
WEIGHT_FILES = ("best.safetensors", "final.safetensors")


class TrainingStopped(Exception):
    """A run stopped by SIGTERM or SIGINT before its last step; its state is saved to resume from."""

    def __init__(self, *, signum: int, step: int, steps: int, state: Path) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step} of {steps}: the state is saved in {state}; "
                         "final.safetensors was not written, as the model is only partly trained")
        self.signum = signum


class Trainer:
    """Runs one training job described by a `TrainConfig`; resumes from `output_dir/last.pt` if present."""

    def __init__(self, *, config: TrainConfig) -> None:
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.placement = distributed.start(config.device)
        self.output = Path(config.output_dir)
        torch.manual_seed(config.seed)
        ranked = config.rank_weight > 0
        self.model = build_model(config.model, rank_head=ranked)
        if config.init_checkpoint:
            tensors, _, semantic = read_checkpoint(config.init_checkpoint)
            trained = with_rank_head(tensors) if ranked else without_rank_head(tensors)
            if len(trained) < len(tensors) and self.placement.is_main:
                print(f"{config.init_checkpoint}: its rank head is left out (training changes what it ranks); "
                      "fit one afterwards with semsam calibrate-iou")
            load_tensors(self.model, with_new_parts(self.model, trained), config.init_checkpoint)
            self.model.semantic = semantic
        else:
            if config.backbone_checkpoint:
                load_backbone(self.model, config.backbone_checkpoint)
            if config.heads_checkpoint:
                fresh = transfer_heads(self.model, config.heads_checkpoint)
                if self.placement.is_main:
                    print(f"decoders from {config.heads_checkpoint}; initialised afresh: {', '.join(fresh) or 'none'}")
        self.model.to(self.placement.device)
        self.image_size = config.image_size or self.model.config.image_size
        # The exported model runs at the size, and with the resizing, it was trained with.
        self.model.config = replace(self.model.config, image_size=self.image_size, resize="long_side")
        self.datasets = [build_dataset(spec) for spec in config.datasets]
        weights = np.array([spec.weight for spec in config.datasets], dtype=np.float64)
        self.dataset_probs = weights / weights.sum()
        self.validation = build_dataset(config.validation) if config.validation else None
        self.vocabulary = Vocabulary.from_datasets(self.datasets)
        if self.placement.is_main:  # only once every dataset opened: a run without its data leaves no folder
            self.output.mkdir(parents=True, exist_ok=True)
            for name in (STATE_FILE, *WEIGHT_FILES):
                remove_stale_temps(self.output / name)
        object_text, part_text = self.vocabulary.embed(TextEncoder(), self.placement.device)
        if self.vocabulary.labelled:
            self.model.semantic = SemanticInfo(
                trained=True, objects=list(self.vocabulary.objects), parts=list(self.vocabulary.parts),
                recognizer_names=list(self.model.semantic.recognizer_names),
            )
        self.precision = resolve_precision(config.precision, self.placement.device)
        self.forward = distributed.wrap(TrainingForward(
            model=self.model, criterion=MultiChoiceLoss(weights=LossWeights(rank=config.rank_weight),
                                                          num_points=config.num_points),
            object_text=object_text, part_text=part_text, precision=self.precision,
            correct_all_outputs=config.correct_all_outputs,
        ), self.placement)
        self.scaler = torch.amp.GradScaler(self.placement.device.type, enabled=self.precision == "fp16")
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.best_score = -math.inf
        self._stop_signal: int | None = None

    def _param_groups(self) -> list[dict[str, Any]]:
        backbone, refiner, decay, no_decay = [], [], [], []
        click_refiner = self.model.sem_seg_head.predictor.click_refiner
        refiner_ids = {id(param) for param in click_refiner.parameters()} if click_refiner is not None else set()
        for name, param in self.model.named_parameters():
            if not param.requires_grad:  # the recognizer is fitted apart, by `semsam fit-recognizer`
                continue
            if name.startswith("backbone."):
                backbone.append(param)
            elif id(param) in refiner_ids:
                refiner.append(param)
            elif param.ndim <= 1 or "embed" in name or "enc" in name or name.endswith("logit_scale"):
                no_decay.append(param)
            else:
                decay.append(param)
        lr = self.config.lr
        return [
            {"params": backbone, "lr": lr * self.config.backbone_lr_scale},
            {"params": decay, "lr": lr},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
            {"params": refiner, "lr": lr * self.config.refiner_lr_scale},
        ]

    def _lr_factor(self, step: int) -> float:
        warmup = max(1, self.config.warmup_steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.config.steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def resume(self) -> bool:
        """Loads `last.pt` if this run was interrupted; returns whether it did."""
        path = self.output / STATE_FILE
        if not path.is_file():
            return False
        state = self._read_state(path)
        if not same_run(state["config"], self.config):
            raise ValueError(
                f"{path} belongs to a run with a different config; use a new output_dir or delete it to restart"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_score = state["step"], state["best_score"]
        return True

    def _read_state(self, path: Path) -> dict[str, Any]:
        """The saved state, read with `weights_only=True`: tensors and plain values, never arbitrary objects."""
        best = self.output / "best.safetensors"
        recover = (f"delete or move {path} and run the same command to start over"
                   + (f", or set init_checkpoint = \"{best}\" in the config to start from the best weights so far"
                      if best.is_file() else ""))
        try:
            state = torch.load(path, map_location=self.placement.device, weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path} holds Python objects other than tensors and plain values, which are never "
                             f"loaded (they could run code): it was not written by semsam. {recover} "
                             f"({str(error).splitlines()[0]})") from None
        except (RuntimeError, EOFError, OSError, ValueError) as error:
            raise ValueError(f"{path} is truncated or corrupt and cannot be resumed from: {recover} "
                             f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
        missing = [key for key in ("model", "optimizer", "scheduler", "step", "best_score", "config")
                   if not isinstance(state, dict) or key not in state]
        if missing:
            raise ValueError(f"{path} is not a semsam training state (no {', '.join(missing)}): {recover}")
        return state

    def save_state(self) -> None:
        """Writes everything needed to continue exactly where we are, atomically (main process only)."""
        if not self.placement.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "config": as_dict(self.config),
            "world_size": self.placement.world_size,
        }
        write_atomic(self.output / STATE_FILE, lambda tmp: torch.save(state, tmp))

    def run(self) -> None:
        """Trains until `steps`, validating and checkpointing on schedule, and exports final.safetensors.

        Raises:
            TrainingStopped: a SIGTERM/SIGINT stopped the run early; its state was saved to resume from.
        """
        resumed = self.resume()
        self._trim_metrics()
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.model.train()
        main = self.placement.is_main
        bar = tqdm(total=self.config.steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True,
                   disable=not main)
        if resumed and main:
            bar.write(f"resumed from step {self.step}")
        stopping = False
        try:
            while self.step < self.config.steps:
                stopping = distributed.any_process(self._stop_signal is not None, self.placement)
                if stopping:
                    break
                start = time.perf_counter()
                losses = self.train_step()
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['total']:.3f}")
                if self.step % self.config.log_every == 0:
                    self._log({"step": self.step, "lr": self.scheduler.get_last_lr()[1],
                               "seconds": time.perf_counter() - start, **losses})
                last = self.step == self.config.steps
                validate = self.validation is not None and (self.step % self.config.validate_every == 0 or last)
                if validate:
                    self.validate(bar)
                elif self.step % self.config.checkpoint_every == 0 or last:
                    self.save_state()
        finally:
            if stopping or self._stop_signal is not None:
                self.save_state()
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.step < self.config.steps:
            raise TrainingStopped(signum=self._stop_signal or signal.SIGTERM, step=self.step,
                                  steps=self.config.steps, state=self.output / STATE_FILE)
        if main:
            self.export(self.output / "final.safetensors")
        distributed.barrier(self.placement)

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def _trim_metrics(self) -> None:
        """Drops log lines of steps after the state resumed from: they were logged before a kill and are redone."""
        path = self.output / METRICS_FILE
        if not self.placement.is_main or not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= self.step:
                kept.append(line + "\n")
        write_atomic(path, lambda tmp: tmp.write_text("".join(kept)))

    def train_step(self) -> dict[str, float]:
        """One optimisation step; its randomness depends only on (seed, step, rank), so a resumed run repeats it."""
        rank = self.placement.rank
        rng = np.random.default_rng([self.config.seed, self.step] + ([rank] if rank else []))
        torch.manual_seed(self.config.seed * 1_000_003 + self.step + rank * 1_000_000_007)
        records = [self._sample(rng) for _ in range(self.config.batch_size)]
        images, prompts, targets = prepare_batch(
            records, image_size=self.image_size, size_divisibility=self.model.config.size_divisibility,
            prompts_per_image=self.config.prompts_per_image, rng=rng, flip=self.config.flip,
            scale_range=self.config.scale_range, pad_value=self.model.config.pixel_mean,
        )
        device = self.placement.device
        feed_back_masks = bool(rng.random() < self.config.mask_prompt_prob)
        corrections = 0
        if self.config.correction_prob > 0 and rng.random() < self.config.correction_prob:
            corrections = int(rng.integers(1, self.config.max_corrections + 1))
        losses = self.forward(images.to(device), to_device(prompts, device), to_device(targets, device),
                              feed_back_masks, corrections)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    def _sample(self, rng: np.random.Generator) -> SegmentationRecord:
        which = int(rng.choice(len(self.datasets), p=self.dataset_probs))
        dataset = self.datasets[which]
        return self.vocabulary.remap(dataset[int(rng.integers(len(dataset)))], which)

    def validate(self, bar: tqdm) -> None:
        """1-click metrics on the first `validation_images` validation images; keeps the best model, saves state.

        Only the main process validates; the others wait for it at their next gradient exchange.
        """
        if not self.placement.is_main:
            return
        self.model.eval()
        metrics = evaluate_clicks(Predictor(self.model), self.validation, max_images=self.config.validation_images,
                                  progress=False)
        self.model.train()
        self._log({"step": self.step, "validation": vars(metrics)})
        bar.write(f"step {self.step}: val miou_best {metrics.miou_best:.3f} top1 {metrics.miou_top1:.3f} "
                  f"coverage {metrics.coverage:.3f}")
        if metrics.miou_best > self.best_score:
            self.best_score = metrics.miou_best
            self.export(self.output / "best.safetensors")
        self.save_state()

    def export(self, path: Path) -> None:
        """Writes the current weights as a semsam checkpoint loadable by `semsam.load_model`."""
        save_checkpoint(path, self.model, self.model.config, self.model.semantic)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.placement.is_main:
            return
        with open(self.output / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def train(config: TrainConfig) -> SemanticSam:
    """Runs a training job and returns the trained model."""
    trainer = Trainer(config=config)
    try:
        trainer.run()
    finally:
        distributed.stop(trainer.placement)
    return trainer.model
