"""ClusterNCE memory: loss against the formula, momentum update against a sample-by-sample replay."""

import math

import pytest
import torch
import torch.nn.functional as F

from vireid.losses import ClusterMemory, occurrence_rank


def _memory(clusters=5, dim=6, seed=0, **kwargs):
    centroids = torch.randn(clusters, dim, generator=torch.Generator().manual_seed(seed))
    return ClusterMemory.from_centroids(centroids, **kwargs)


def test_occurrence_rank_counts_earlier_equal_labels():
    labels = torch.tensor([3, 1, 3, 3, 0, 1, 7])
    assert occurrence_rank(labels).tolist() == [0, 0, 1, 2, 0, 1, 0]
    assert occurrence_rank(torch.tensor([], dtype=torch.long)).tolist() == []


def test_from_centroids_normalises_rows():
    memory = _memory()
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(5))


def test_loss_is_softmax_cross_entropy_of_scaled_cosine():
    memory = _memory(temperature=0.1)
    inputs = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([2, 0, 2, 4])
    expected = 0.0
    for q, y in zip(inputs.tolist(), targets.tolist()):
        qn = [v / math.sqrt(sum(w * w for w in q)) for v in q]
        scores = [sum(a * b for a, b in zip(qn, m)) / 0.1 for m in memory.features.tolist()]
        expected += -scores[y] + math.log(sum(math.exp(s) for s in scores))
    assert memory(inputs, targets).item() == pytest.approx(expected / 4, rel=1e-5)


def test_gradient_reaches_inputs_not_memory():
    memory = _memory()
    inputs = torch.randn(3, 6, requires_grad=True)
    memory(inputs, torch.tensor([0, 1, 1])).backward()
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0
    assert not memory.features.requires_grad


def test_update_replays_the_sequential_per_sample_rule():
    memory = _memory(clusters=4, momentum=0.3)
    start = memory.features.clone()
    gen = torch.Generator().manual_seed(2)
    inputs = torch.randn(20, 6, generator=gen)
    targets = torch.randint(0, 3, (20,), generator=gen)  # cluster 3 is untouched; repeats interleave
    memory.update(inputs, targets)
    expected = start.double()
    for q, y in zip(inputs.double(), targets.tolist()):
        q = q / q.norm()
        expected[y] = 0.3 * expected[y] + 0.7 * q
        expected[y] = expected[y] / expected[y].norm()
    torch.testing.assert_close(memory.features.double(), expected, atol=1e-6, rtol=0)
    assert torch.equal(memory.features[3], start[3])


def test_update_order_matters_within_a_cluster():
    memory_a, memory_b = _memory(clusters=1), _memory(clusters=1)
    q = torch.randn(2, 6, generator=torch.Generator().manual_seed(3))
    memory_a.update(q, torch.tensor([0, 0]))
    memory_b.update(q.flip(0), torch.tensor([0, 0]))
    assert not torch.allclose(memory_a.features, memory_b.features)


def test_memory_is_a_buffer_saved_and_restored_with_state_dict():
    memory = _memory()
    memory.update(torch.randn(8, 6), torch.arange(8) % 5)
    state = memory.state_dict()
    assert set(state) == {"features"}
    restored = ClusterMemory(6, 5)
    restored.load_state_dict(state)
    assert torch.equal(restored.features, memory.features)
    assert memory.double().features.dtype == torch.float64  # moves with the module


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_works_on_cuda():
    memory = _memory().to("cuda")
    inputs, targets = torch.randn(8, 6, device="cuda"), torch.arange(8, device="cuda") % 5
    loss = memory(inputs, targets)
    memory.update(inputs, targets)
    assert loss.is_cuda and memory.features.is_cuda
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(5, device="cuda"))


def test_update_of_unit_inputs_keeps_unit_rows():
    memory = _memory()
    memory.update(F.normalize(torch.randn(16, 6), dim=1), torch.arange(16) % 5)
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(5))
