"""The training loop: multi-choice learning on mixed datasets, atomic checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from semsam.build import build_model
from semsam.checkpoint import load_tensors, read_checkpoint, save_checkpoint
from semsam.data import build_dataset
from semsam.data.prompts import prepare_batch
from semsam.evaluation.click import evaluate_clicks
from semsam.io import write_atomic
from semsam.modeling import DecoderOutput, PromptBatch, SemanticSam
from semsam.predictor import Predictor
from semsam.training.config import TrainConfig, as_dict
from semsam.training.losses import LossWeights, MultiChoiceLoss

STATE_FILE = "last.pt"


class Trainer:
    """Runs one training job described by a `TrainConfig`; resumes from `output_dir/last.pt` if present."""

    def __init__(self, *, config: TrainConfig) -> None:
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.output = Path(config.output_dir)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.model = build_model(config.model)
        if config.init_checkpoint:
            tensors, _, _ = read_checkpoint(config.init_checkpoint)
            load_tensors(self.model, tensors, config.init_checkpoint)
        self.image_size = config.image_size or self.model.config.image_size
        self.datasets = [build_dataset(spec) for spec in config.datasets]
        weights = np.array([spec.weight for spec in config.datasets], dtype=np.float64)
        self.dataset_probs = weights / weights.sum()
        self.validation = build_dataset(config.validation) if config.validation else None
        self.criterion = MultiChoiceLoss(weights=LossWeights(), num_points=config.num_points)
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.best_score = -math.inf
        self._stop_requested = False

    def _param_groups(self) -> list[dict[str, Any]]:
        backbone, decay, no_decay = [], [], []
        for name, param in self.model.named_parameters():
            if name.startswith("backbone."):
                backbone.append(param)
            elif param.ndim <= 1 or "embed" in name or "enc" in name or name.endswith("logit_scale"):
                no_decay.append(param)
            else:
                decay.append(param)
        lr = self.config.lr
        return [
            {"params": backbone, "lr": lr * self.config.backbone_lr_scale},
            {"params": decay, "lr": lr},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
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
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"] != as_dict(self.config):
            raise ValueError(
                f"{path} belongs to a run with a different config; use a new output_dir or delete it to restart"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_score = state["step"], state["best_score"]
        return True

    def save_state(self) -> None:
        """Writes everything needed to continue exactly where we are, atomically."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "config": as_dict(self.config),
        }
        write_atomic(self.output / STATE_FILE, lambda tmp: torch.save(state, tmp))

    def run(self) -> None:
        """Trains until `steps`, validating and checkpointing on schedule; a SIGTERM/SIGINT saves and stops."""
        resumed = self.resume()
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.model.train()
        bar = tqdm(total=self.config.steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        if resumed:
            bar.write(f"resumed from step {self.step}")
        try:
            while self.step < self.config.steps and not self._stop_requested:
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
            if self._stop_requested:
                self.save_state()
                bar.write(f"stopped at step {self.step}; state saved, run the same command to resume")
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.export(self.output / "final.safetensors")

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def train_step(self) -> dict[str, float]:
        """One optimisation step; its randomness depends only on (seed, step), so a resumed run repeats it."""
        rng = np.random.default_rng([self.config.seed, self.step])
        torch.manual_seed(self.config.seed * 1_000_003 + self.step)
        records = [self._sample(rng) for _ in range(self.config.batch_size)]
        images, prompts, targets = prepare_batch(
            records, image_size=self.image_size, size_divisibility=self.model.config.size_divisibility,
            prompts_per_image=self.config.prompts_per_image, rng=rng, flip=self.config.flip,
            scale_range=self.config.scale_range, pad_value=self.model.config.pixel_mean,
        )
        features = self.model.encode_image(self.model.preprocess(images))
        if rng.random() < self.config.mask_prompt_prob:
            prompts = self._with_mask_prompts(features, prompts)
        output = self.model.decode(features, prompts, with_aux=True)
        losses = self.criterion(output, targets)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    def _with_mask_prompts(self, features: Any, prompts: PromptBatch) -> PromptBatch:
        """Feeds each prompt's highest-scored earlier prediction back as a mask input, as a user would."""
        with torch.no_grad():
            first: DecoderOutput = self.model.decode(features, prompts)
        best = first.iou_scores.argmax(-1)
        index = best[..., None, None, None].expand(-1, -1, 1, *first.mask_logits.shape[-2:])
        logits = first.mask_logits.gather(2, index).squeeze(2)
        return replace(prompts, mask_inputs=logits, mask_valid=torch.ones(logits.shape[:2], dtype=torch.bool))

    def _sample(self, rng: np.random.Generator):  # noqa: ANN202 - a SegmentationRecord
        dataset = self.datasets[int(rng.choice(len(self.datasets), p=self.dataset_probs))]
        return dataset[int(rng.integers(len(dataset)))]

    def validate(self, bar: tqdm) -> None:
        """1-click metrics on the first `validation_images` validation images; keeps the best model, saves state."""
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
        with open(self.output / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")


def train(config: TrainConfig) -> SemanticSam:
    """Runs a training job and returns the trained model."""
    trainer = Trainer(config=config)
    trainer.run()
    return trainer.model
