"""Knowledge-distillation losses as pure functions (Hinton et al., 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "labelled_cross_entropy", "distillation_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Soft-target loss ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over rows.

    The ``T^2`` factor keeps the gradient scale independent of ``T``, so the mix with the hard-label
    loss does not have to be retuned when ``T`` changes. The teacher side is detached: gradient
    reaches only the student.

    Args:
        student_logits: (B, C) raw scores of the student.
        teacher_logits: (B, C) raw scores of the teacher for the same rows.
        temperature: softmax temperature ``T > 0``; higher values expose more of the teacher's
            ranking of the wrong classes.

    Returns:
        A scalar: the KL divergence summed over classes and divided by ``B`` ("batchmean"), times ``T^2``.
    """
    if student_logits.shape != teacher_logits.shape:
        shapes = f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        raise ValueError(f"student and teacher logits differ in shape: {shapes}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # float32 even under bf16 autocast: the log-ratio of two nearly equal distributions cancels badly.
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows with a gold label (``labels >= 0``); 0 when there are none.

    Args:
        logits: (B, C) raw scores.
        labels: (B,) class indices, -1 for rows that only the teacher labels.

    Returns:
        A scalar: the mean cross-entropy of the labelled rows.
    """
    labelled = labels >= 0
    if not labelled.any():
        # Keep the graph connected (a plain 0 would have no grad_fn) so DDP sees every parameter used.
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled].float(), labels[labelled])


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """``alpha * kd_loss + (1 - alpha) * cross-entropy``, the classic distillation objective.

    The KD term covers every row; the cross-entropy only rows with a gold label, so a transfer set
    of texts without labels (label -1) trains from the teacher alone.

    Args:
        student_logits: (B, C) raw scores of the student.
        teacher_logits: (B, C) raw scores of the teacher (detached inside).
        labels: (B,) gold class indices, or -1 where the row has none.
        temperature: softmax temperature of the KD term.
        alpha: weight of the KD term in [0, 1]; 0 is plain fine-tuning, 1 ignores the gold labels.

    Returns:
        A scalar loss.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    loss = alpha * kd_loss(student_logits, teacher_logits, temperature)
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * labelled_cross_entropy(student_logits, labels)
    return loss
