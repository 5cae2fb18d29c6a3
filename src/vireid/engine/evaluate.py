"""`vireid evaluate --checkpoint`: rebuild a trained model and run a dataset's full protocol."""

from __future__ import annotations

from pathlib import Path

from vireid.config import config_from_dict
from vireid.engine.checkpoint import load_checkpoint


def model_from_checkpoint(path: str | Path, device="cpu"):
    """(model in eval mode, its Config) from a vireid checkpoint; no weights are downloaded."""
    from vireid.engine.pipeline import model_from_config

    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    num_classes = int(state["extra"].get("num_classes", 0)) if state.get("extra") else 0
    model = model_from_config(cfg, pretrained="none", num_classes=num_classes)
    classifier = state["model"].get("classifier.weight")
    if classifier is not None and classifier.shape[0] != num_classes:
        model.reset_classifier(classifier.shape[0])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, root: str | Path, trial: int | None = None,
                        trials: int = 10, device: str = "auto", batch_size: int = 128) -> dict:
    """Every protocol of `dataset` for the checkpoint's model; same format as final_metrics.json."""
    from vireid.data.registry import open_dataset
    from vireid.engine.device import select_device
    from vireid.engine.trainset import sample_embedder
    from vireid.evaluation import run_protocols

    dev = select_device(device)
    model, cfg = model_from_checkpoint(checkpoint, dev)
    reader = open_dataset(dataset, root, trial=trial if trial is not None else cfg.data.trial)
    cfg.data.eval_batch_size = batch_size
    embed = sample_embedder(model, cfg, dev, key=f"{reader.name}-test")
    return run_protocols(embed, reader, trials=trials)
