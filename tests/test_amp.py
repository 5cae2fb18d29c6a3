"""Mixed precision: loss scaling exactly where autocast runs in float16, and the training steps use it."""

from __future__ import annotations

import copy

import numpy as np
import torch

from model_helpers import model_for_tests
from vireid.config import load_config
from vireid.engine import device as device_module
from vireid.engine.context import RunContext
from vireid.engine.mmlm import SharedLabels
from vireid.engine.sca import SCATrainer, prepare_sca_model, sca_optimizer


def test_loss_scaling_only_under_float16_autocast(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a V100 or T4
    assert device_module.float16_autocast(cuda, True)
    assert not device_module.float16_autocast(cuda, False)  # model.amp off
    assert not device_module.float16_autocast(torch.device("cpu"), True)  # no autocast on the CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # bfloat16 needs no scaling
    assert not device_module.float16_autocast(cuda, True)
    assert not device_module.grad_scaler(torch.device("cpu"), True).is_enabled()


def test_sca_step_goes_through_the_scaler_and_scaling_does_not_change_the_update():
    labels = np.array([0, 0, 1, 1])
    shared = SharedLabels(labels, labels, 2)
    ctx = RunContext(device=torch.device("cpu"), run=None, amp=False, image_size=(32, 16))
    torch.manual_seed(0)
    model = prepare_sca_model(model_for_tests("resnet18"), shared, ctx.device)
    views = [torch.randn(4, 3, 32, 16, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    step = (np.arange(4), np.arange(4))
    class CountingScaler(torch.amp.GradScaler):
        calls = 0

        def scale(self, outputs):
            CountingScaler.calls += 1
            return super().scale(outputs)

    updated = []
    for scaler in (torch.amp.GradScaler("cpu", enabled=False), CountingScaler("cpu", init_scale=256.0)):
        trainer = SCATrainer(copy.deepcopy(model), None, shared, load_config().sca, ctx)
        trainer.scaler = scaler
        optimizer, _ = sca_optimizer(trainer.model, load_config().sca)
        trainer.step(views, step, None, epoch=0, optimizer=optimizer)
        updated.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert CountingScaler.calls == 1 and scaler.get_scale() == 256.0  # scaled once, no overflow found
    torch.testing.assert_close(updated[0], updated[1], rtol=1e-4, atol=1e-6)
