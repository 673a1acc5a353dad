"""Balanced CE: the mean of the background CE and the foreground CE."""

import torch
import torch.nn.functional as F

from semples.segmentation.losses import BalancedCrossEntropyLoss, balanced_cross_entropy


def test_is_the_mean_of_the_background_and_foreground_means():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    labels[0, :2, :2], labels[1, 0, :] = 1, 2
    labels[1, 3, 4] = 255
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    valid = labels != 255
    background = per_pixel[valid & (labels == 0)].mean()
    foreground = per_pixel[valid & (labels > 0)].mean()
    expected = (background + foreground) / 2
    torch.testing.assert_close(balanced_cross_entropy(logits, labels), expected)
    assert not torch.isclose(expected, F.cross_entropy(logits, labels, ignore_index=255))


def test_a_missing_group_drops_out_and_all_ignored_gives_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    background_only = torch.zeros(1, 2, 2, dtype=torch.long)
    torch.testing.assert_close(
        balanced_cross_entropy(logits, background_only), F.cross_entropy(logits, background_only)
    )
    ignored = torch.full((1, 2, 2), 255, dtype=torch.long)
    loss = balanced_cross_entropy(logits, ignored)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_mmseg_wrapper_names_its_loss_and_weights_it():
    loss = BalancedCrossEntropyLoss(loss_weight=2.0)
    logits, labels = torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 0]]])
    assert loss.loss_name == "loss_balanced_ce"
    torch.testing.assert_close(loss(logits, labels), 2 * balanced_cross_entropy(logits, labels))
