"""The distillation losses: parity with the textbook formula, limits, masking and where gradient goes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_modules.losses import distillation_loss, kd_loss, labelled_cross_entropy


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 3, generator=g) * 2
    teacher = torch.randn(6, 3, generator=g) * 2
    labels = torch.tensor([0, 2, 1, -1, 0, -1])
    return student, teacher, labels


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0])
def test_kd_matches_kl_div_times_t_squared(logits, T):
    s, t, _ = logits
    expected = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T**2
    torch.testing.assert_close(kd_loss(s, t, T), expected)
    # And the definition written out: sum_c p_t (log p_t - log p_s), averaged over rows, times T^2.
    p_t = F.softmax(t / T, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T**2
    torch.testing.assert_close(kd_loss(s, t, T), manual)


def test_kd_is_zero_when_student_equals_teacher(logits):
    s, _, _ = logits
    assert kd_loss(s, s.clone(), 2.0).abs().item() < 1e-6
    # Shifting all logits of a row by a constant leaves the distribution, so the loss, unchanged.
    assert kd_loss(s, s + 3.0, 2.0).abs().item() < 1e-5
    assert kd_loss(s, s.flip(0), 2.0).item() > 0.01


def test_gradient_reaches_only_the_student(logits):
    s, t, labels = logits
    s, t = s.clone().requires_grad_(), t.clone().requires_grad_()
    distillation_loss(s, t, labels, temperature=2.0, alpha=0.7).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_gradient_pushes_student_toward_teacher(logits):
    s, t, _ = logits
    s = s.clone().requires_grad_()
    before = kd_loss(s, t, 2.0)
    before.backward()
    with torch.no_grad():
        after = kd_loss(s - 0.1 * s.grad, t, 2.0)
    assert after < before


def test_alpha_limits_are_ce_and_kd(logits):
    s, t, labels = logits
    torch.testing.assert_close(distillation_loss(s, t, labels, 2.0, alpha=1.0), kd_loss(s, t, 2.0))
    labelled = labels >= 0
    ce = F.cross_entropy(s[labelled], labels[labelled])
    torch.testing.assert_close(distillation_loss(s, t, labels, 2.0, alpha=0.0), ce)


def test_unlabelled_rows_get_the_kd_term_only(logits):
    s, t, labels = logits
    alpha, T = 0.3, 3.0
    labelled = labels >= 0
    expected = alpha * kd_loss(s, t, T) + (1 - alpha) * F.cross_entropy(s[labelled], labels[labelled])
    torch.testing.assert_close(distillation_loss(s, t, labels, T, alpha), expected)
    # What the student says on an unlabelled row moves the KD term only.
    moved = s.clone()
    moved[~labelled] += torch.tensor([5.0, -5.0, 0.0])
    assert labelled_cross_entropy(moved, labels).item() == pytest.approx(labelled_cross_entropy(s, labels).item())
    assert kd_loss(moved, t, T).item() != pytest.approx(kd_loss(s, t, T).item())


def test_a_batch_without_gold_labels_trains_from_the_teacher(logits):
    s, t, _ = logits
    s = s.clone().requires_grad_()
    none = torch.full((6,), -1)
    loss = distillation_loss(s, t, none, 2.0, alpha=0.5)
    torch.testing.assert_close(loss, 0.5 * kd_loss(s, t, 2.0))
    loss.backward()
    assert s.grad.abs().sum() > 0
    assert labelled_cross_entropy(s, none).item() == 0.0


def test_bf16_inputs_are_computed_in_float32(logits):
    s, t, labels = logits
    low = distillation_loss(s.bfloat16(), t.bfloat16(), labels, 2.0, 0.5)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, distillation_loss(s.bfloat16().float(), t.bfloat16().float(), labels, 2.0, 0.5))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, t, y: kd_loss(s, t[:, :2], 2.0), "differ"),
        (lambda s, t, y: kd_loss(s, t, 0.0), "temperature"),
        (lambda s, t, y: distillation_loss(s, t, y, 2.0, 1.5), "alpha"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(logits, call, message):
    with pytest.raises(ValueError, match=message):
        call(*logits)
