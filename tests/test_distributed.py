"""Two training processes (gloo on CPU) see different data and keep bit-identical weights."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer, train

from test_training_labels import synthetic_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config_path: str, report_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    seen: list[str] = []
    original = Trainer._sample

    def recording_sample(self, rng):
        record = original(self, rng)
        seen.append(record.image_id)
        return record

    Trainer._sample = recording_sample
    model = train(load_train_config(config_path))
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    report = {"seen": seen, "weights": digest.hexdigest()}
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report))


def test_two_processes_stay_in_sync_on_different_data(tmp_path):
    config = synthetic_config(tmp_path, steps=3, checkpoint_every=2)
    mp.spawn(_worker, args=(2, _free_port(), str(config), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert len(ranks[0]["seen"]) == 6 and ranks[0]["seen"] != ranks[1]["seen"]
    out = tmp_path / "run"
    assert (out / "final.safetensors").is_file() and (out / "last.pt").is_file()
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3 and state["world_size"] == 2
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]  # only the main process logs
