"""`model.compile`: off by default; on, the training model is compiled in place, takes the same CMC
step as the eager model, and its checkpoint holds the bare model's parameter names."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model_helpers import model_for_tests
from vireid.config import CMCConfig, Config, ModelConfig
from vireid.engine.checkpoint import load_checkpoint, save_checkpoint
from vireid.engine.cmc import CMCTrainer, ContrastTarget
from vireid.engine.context import RunContext
from vireid.engine.pipeline import wrap_model
from vireid.models import load_trained_weights

CPU = torch.device("cpu")


def _is_compiled(model: torch.nn.Module) -> bool:
    return getattr(model, "_compiled_call_impl", None) is not None


def test_compile_is_off_by_default_and_the_wrapped_model_stays_eager():
    assert Config().model.compile is False
    model = model_for_tests()
    wrapped = wrap_model(model, ModelConfig(arch="resnet18", pretrained="none"), CPU)
    assert wrapped is model and not _is_compiled(wrapped)


def _compile_usable() -> bool:
    try:
        return bool(torch.compile(lambda t: t * 2, backend="aot_eager")(torch.ones(2)).sum() == 4)
    except Exception:  # noqa: BLE001 - any failure means: not usable here
        return False


def _cmc_step(model: torch.nn.Module, centroids: torch.Tensor, views: list[torch.Tensor], labels: np.ndarray
              ) -> tuple[float, torch.Tensor]:
    """One step of the engine's own CMC update (ClusterNCE, Adam, memory update) on fixed inputs;
    returns the loss and the visible memory after its update."""
    trainer = CMCTrainer(model, None, CMCConfig(), None, RunContext(device=CPU, run=None))
    target = ContrastTarget(labels, labels, trainer.memory(centroids), trainer.memory(centroids))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    n = len(views[0])
    loss = trainer.contrast_step(views, (np.arange(n), np.arange(n)), target, optimizer)
    return loss, target.memory_v.features.clone()


@pytest.mark.slow
def test_compiled_model_trains_like_eager_and_checkpoints_bare_names(tmp_path, monkeypatch):
    if not _compile_usable():
        pytest.skip("torch.compile is not usable on this machine")
    # Inductor needs minutes on a small CPU; aot_eager runs the same capture (one dynamo graph of
    # the model, AOT autograd for the backward) and executes it eagerly.
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, *a, **k: original(self, *a, **{**k, "backend": "aot_eager"}))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    eager = model_for_tests()
    compiled = wrap_model(copy.deepcopy(eager), ModelConfig(arch="resnet18", pretrained="none", compile=True), CPU)
    assert _is_compiled(compiled)
    gen = torch.Generator().manual_seed(1)
    views = [torch.randn(6, 3, 64, 32, generator=gen) for _ in range(3)]
    labels = np.array([0, 0, 1, 1, 2, 2])
    centroids = torch.nn.functional.normalize(torch.randn(3, eager.feature_dim, generator=gen), dim=1)

    loss_e, memory_e = _cmc_step(eager, centroids, views, labels)
    loss_c, memory_c = _cmc_step(compiled, centroids, views, labels)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the model really went through dynamo
    assert loss_c == pytest.approx(loss_e, rel=1e-4)
    assert torch.allclose(memory_c, memory_e, atol=1e-5)
    for (name, p_e), (name_c, p_c) in zip(eager.named_parameters(), compiled.named_parameters()):
        assert name == name_c
        assert torch.allclose(p_e, p_c, atol=1e-5), name

    path = save_checkpoint(tmp_path / "c.pt", model=compiled, stage="cmc", epoch=0, config={})
    state = load_checkpoint(path)["model"]
    assert list(state) == list(eager.state_dict())
    assert not any("_orig_mod" in k for k in state)
    fresh = model_for_tests()
    load_trained_weights(fresh, state, str(path))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), compiled.state_dict().values()))
