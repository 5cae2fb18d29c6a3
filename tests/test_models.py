"""Two-stream AGW model: structure, non-local maths, GeM, BN neck, modes and weight loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torchvision import models as tv_models

from vireid.errors import CheckpointError, ConfigError, VireidError
from model_helpers import model_for_tests
from vireid.models import GeM, ModelOutput, NonLocalBlock, gem_pool
from vireid.models import agw


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return model_for_tests("resnet18", pretrained="none", num_classes=5)


def nonlocal_reference(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """The definition with the explicit (N, N) matrix: z_i = x_i + W(Σ_j (θ_i·φ_j / N) g_j)."""
    b, c, h, w = x.shape
    n = h * w
    out = torch.empty_like(x)
    for s in range(b):
        theta = block.theta(x[s:s + 1]).reshape(-1, n).T      # (N, C')
        phi = block.phi(x[s:s + 1]).reshape(-1, n).T
        g = block.g(x[s:s + 1]).reshape(-1, n).T
        f = theta @ phi.T / n                                 # (N, N)
        y = (f @ g).T.reshape(1, -1, h, w)
        out[s] = x[s] + block.W(y)[0]
    return out


@pytest.mark.parametrize("inter", [1, 4])
def test_nonlocal_matches_explicit_attention_matrix(inter):
    torch.manual_seed(1)
    block = NonLocalBlock(8, inter).eval()
    with torch.no_grad():
        block.W[1].weight.normal_()
        block.W[1].bias.normal_()
        block.W[1].running_mean.normal_()
    x = torch.randn(2, 8, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(block(x), nonlocal_reference(block, x), rtol=1e-4, atol=1e-5)


def test_fresh_nonlocal_block_is_identity():
    block = NonLocalBlock(16, 8)
    x = torch.randn(3, 16, 4, 4)
    torch.testing.assert_close(block(x), x)
    assert block.W[1].weight.abs().sum() == 0 and block.W[1].bias.abs().sum() == 0


def test_gem_formula_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [-5.0, 3.0]]]])                  # negative entry clamps to 0
    expected = ((1 + 8 + 0 + 27) / 4 + 1e-12) ** (1 / 3)
    assert gem_pool(x).item() == pytest.approx(expected, rel=1e-6)
    assert GeM(p=1.0)(torch.full((2, 3, 4, 4), 2.0)).allclose(torch.full((2, 3), 2.0))


def test_nonlocal_positions_resnet50_and_resnet18():
    m50 = model_for_tests("resnet50", pretrained="none", nonlocal_channels="half")
    assert m50.nonlocal_after == {"layer2": [2, 3], "layer3": [3, 4, 5]}
    assert [b.inter_channels for b in m50.nonlocal2] == [256, 256]
    assert [b.inter_channels for b in m50.nonlocal3] == [512, 512, 512]
    assert m50.feature_dim == 2048
    # Execution order: each non-local block runs right after its trunk block.
    calls = []
    for name in ("layer2", "layer3"):
        for i, blk in enumerate(getattr(m50, name)):
            blk.register_forward_hook(lambda *a, tag=f"{name}.{i}": calls.append(tag))
    for j, blk in enumerate(m50.nonlocal2):
        blk.register_forward_hook(lambda *a, tag=f"nl2.{j}": calls.append(tag))
    for j, blk in enumerate(m50.nonlocal3):
        blk.register_forward_hook(lambda *a, tag=f"nl3.{j}": calls.append(tag))
    m50.eval()
    with torch.no_grad():
        fmap = m50.feature_maps(torch.randn(1, 3, 32, 16))
    assert calls == ["layer2.0", "layer2.1", "layer2.2", "nl2.0", "layer2.3", "nl2.1",
                     "layer3.0", "layer3.1", "layer3.2", "layer3.3", "nl3.0", "layer3.4", "nl3.1",
                     "layer3.5", "nl3.2"]
    assert fmap.shape == (1, 2048, 2, 1)                              # last stride 1: /16
    m18 = model_for_tests("resnet18", pretrained="none")
    assert m18.nonlocal_after == {"layer2": [1], "layer3": [1]}
    assert [b.inter_channels for b in m18.nonlocal2] == [1]            # reference quirk C' = 1
    assert model_for_tests("resnet18", pretrained="none", nonlocal_blocks=False).nonlocal_after == {}


def test_last_stride_controls_output_resolution(resnet18):
    x = torch.randn(1, 3, 64, 32)
    resnet18.eval()
    with torch.no_grad():
        assert resnet18.feature_maps(x).shape == (1, 512, 4, 2)
        m2 = model_for_tests("resnet18", pretrained="none", last_stride=2).eval()
        assert m2.feature_maps(x).shape == (1, 512, 2, 1)


def test_bn_neck_and_classifier_initialisation(resnet18):
    bn = resnet18.bottleneck
    assert not bn.bias.requires_grad and bn.bias.abs().sum() == 0
    assert abs(bn.weight.mean().item() - 1.0) < 0.005 and 0.005 < bn.weight.std().item() < 0.015
    cls = resnet18.classifier
    assert cls.bias is None and cls.weight.shape == (5, 512)
    assert 0.0005 < cls.weight.std().item() < 0.0015
    m = model_for_tests("resnet18", pretrained="none")
    assert m.classifier is None
    m.reset_classifier(7)
    assert m.classifier.weight.shape == (7, 512) and m.num_classes == 7


def test_train_and_eval_outputs(resnet18):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 64, 32)
    resnet18.train()
    out = resnet18(x, "visible")
    assert isinstance(out, ModelOutput)
    assert out.pooled.shape == out.bn.shape == (4, 512) and out.logits.shape == (4, 5)
    torch.testing.assert_close(out.logits, out.bn @ resnet18.classifier.weight.T)
    # BN neck in train mode normalises with batch statistics of the pooled features.
    mu, var = out.pooled.mean(0), out.pooled.var(0, unbiased=False)
    expected_bn = (out.pooled - mu) / torch.sqrt(var + 1e-5) * resnet18.bottleneck.weight
    torch.testing.assert_close(out.bn, expected_bn, rtol=1e-4, atol=1e-4)
    resnet18.eval()
    with torch.no_grad():
        feats = resnet18(x, "visible")
        pooled = resnet18.pool(resnet18.feature_maps(x, "visible"))
        bn = resnet18.bottleneck(pooled)
    torch.testing.assert_close(feats, F.normalize(bn, dim=1))
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(4))
    with torch.no_grad():
        full = resnet18(x, "visible", return_all=True)              # eval BN, all outputs
    torch.testing.assert_close(full.pooled, pooled)
    torch.testing.assert_close(full.bn, bn)
    torch.testing.assert_close(full.logits, bn @ resnet18.classifier.weight.T)


def test_stems_are_separate_and_both_mode_concatenates(resnet18):
    resnet18.eval()
    with torch.no_grad():
        resnet18.infrared_stem.conv1.weight.add_(0.05)
    assert resnet18.visible_stem.conv1.weight.data_ptr() != resnet18.infrared_stem.conv1.weight.data_ptr()
    x = torch.randn(5, 3, 64, 32)
    with torch.no_grad():
        vis = resnet18(x[:3], "visible")
        ir = resnet18(x[3:], "infrared")
        both = resnet18(x, "both", n_visible=3)
        ir_as_vis = resnet18(x[3:], "visible")
    torch.testing.assert_close(both, torch.cat([vis, ir]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ir, ir_as_vis, atol=1e-4)
    with pytest.raises(ValueError):
        resnet18(x, "both")
    with pytest.raises(ValueError):
        resnet18(x, "thermal")


def test_channels_last_gives_same_features():
    torch.manual_seed(3)
    m = model_for_tests("resnet18", pretrained="none").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        ref = m(x, "infrared")
        m_cl = m.to(memory_format=torch.channels_last)
        out = m_cl(x.to(memory_format=torch.channels_last), "infrared")
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_imagenet_weights_from_file_fill_both_stems_and_trunk(tmp_path):
    torch.manual_seed(4)
    tv = tv_models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    m = model_for_tests("resnet18", pretrained="imagenet", weights_path=path)
    for stem in (m.visible_stem, m.infrared_stem):
        torch.testing.assert_close(stem.conv1.weight, tv.conv1.weight)
        torch.testing.assert_close(stem.bn1.running_var, tv.bn1.running_var)
    torch.testing.assert_close(m.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    torch.testing.assert_close(m.layer4[0].downsample[0].weight, tv.layer4[0].downsample[0].weight)
    # A ResNet-50 file for a ResNet-18 model is refused, naming the file.
    torch.save(tv_models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="r50.pth"):
        model_for_tests("resnet18", pretrained="imagenet", weights_path=tmp_path / "r50.pth")


def test_imagenet_download_failure_says_where_to_put_weights(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(tv_models.ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(VireidError, match="model.weights_path"):
        model_for_tests("resnet18", pretrained="imagenet")


def test_own_checkpoint_round_trip_with_other_classifier(tmp_path, resnet18):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": resnet18.state_dict(), "epoch": 3}, path)
    m = model_for_tests("resnet18", pretrained="synthetic", weights_path=path, num_classes=9)
    assert m.classifier.weight.shape == (9, 512)                     # fresh head, other class count
    own = resnet18.state_dict()
    for key, value in m.state_dict().items():
        if not key.startswith("classifier."):
            torch.testing.assert_close(value, own[key], msg=key)
    # Missing trunk keys are reported by name.
    broken = {k: v for k, v in own.items() if not k.startswith("layer4.1.")}
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="missing .*layer4.1"):
        model_for_tests("resnet18", pretrained="synthetic", weights_path=tmp_path / "broken.pt")
    with pytest.raises(ConfigError, match="model.weights_path"):
        model_for_tests("resnet18", pretrained="synthetic")
    with pytest.raises(CheckpointError, match="does not exist"):
        model_for_tests("resnet18", pretrained="synthetic", weights_path=tmp_path / "nope.pt")


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError, match="model.arch"):
        model_for_tests("resnet34", pretrained="none")
    with pytest.raises(ConfigError, match="model.nonlocal_channels"):
        model_for_tests("resnet18", pretrained="none", nonlocal_channels="quarter")


def test_bias_of_bn_neck_stays_zero_after_a_step(resnet18):
    resnet18.train()
    opt = torch.optim.SGD([p for p in resnet18.parameters() if p.requires_grad], lr=0.1)
    out = resnet18(torch.randn(4, 3, 64, 32), "both", n_visible=2)
    (out.bn.sum() + out.logits.sum()).backward()
    opt.step()
    assert resnet18.bottleneck.bias.abs().sum() == 0
    assert agw.ARCHS["resnet18"][2] == 512
