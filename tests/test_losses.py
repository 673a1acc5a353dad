"""Tests of semples.losses on 2-D features whose cosines are known by hand."""

import math

import pytest
import torch

from semples.losses import (
    LossTerms,
    area_loss,
    clamped_similarity,
    match_loss,
    prompt_loss,
    refine_loss,
)

X = torch.tensor([[1.0, 0.0]])
AT_06 = torch.tensor([[0.6, 0.8]])  # cos with X: 0.6
AT_08 = torch.tensor([[0.8, 0.6]])  # cos with X: 0.8
OPPOSITE = torch.tensor([[-1.0, 0.0]])  # cos with X: -1 -> clamped to 1e-4
LOW, HIGH = 1e-4, 0.9999


def test_clamped_similarity_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    b = torch.tensor([[0.6, 0.8], [1.6, 1.2], [-1.0, 0.0], [5.0, 0.0], [1.0, 0.0]])
    sim = clamped_similarity(a, b)
    torch.testing.assert_close(sim, torch.tensor([0.6, 0.8, LOW, HIGH, LOW]))


def test_clamped_similarity_custom_limits_and_validation():
    torch.testing.assert_close(clamped_similarity(X, AT_08, low=0.1, high=0.7), torch.tensor([0.7]))
    with pytest.raises(ValueError, match="equal shape"):
        clamped_similarity(X, torch.ones(2, 2))
    with pytest.raises(ValueError, match="equal shape"):
        clamped_similarity(torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="low"):
        clamped_similarity(X, X, low=0.5, high=0.4)
    with pytest.raises(ValueError, match="zero pairs"):
        clamped_similarity(torch.ones(0, 2), torch.ones(0, 2))


def test_zero_vector_gives_low_similarity_and_finite_zero_gradient():
    a = torch.zeros(1, 2, requires_grad=True)
    b = torch.tensor([[0.6, 0.8]], requires_grad=True)
    sim = clamped_similarity(a, b)
    assert sim.item() == pytest.approx(LOW)
    torch.log(sim).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert not a.grad.any() and not b.grad.any()


def test_gradients_finite_and_zero_at_both_clamp_limits():
    for other in (OPPOSITE, X):  # cos -1 -> LOW, cos 1 -> HIGH
        a = X.clone().requires_grad_(True)
        terms = match_loss(a, a, other, lambda_b=1.0)
        assert torch.isfinite(terms.total)
        terms.total.backward()
        assert torch.isfinite(a.grad).all()
        assert not a.grad.any()


def test_match_loss_hand_computed():
    v_f = torch.cat([AT_06, AT_08])
    v_b = torch.cat([AT_08, OPPOSITE])
    u_f = torch.cat([X, X])
    terms = match_loss(v_f, v_b, u_f, lambda_b=2.4)
    assert isinstance(terms, LossTerms)
    fg = -(math.log(0.6) + math.log(0.8)) / 2
    bg = -(math.log(1 - 0.8) + math.log(1 - LOW)) / 2
    assert terms.parts["match_fg"].item() == pytest.approx(fg)
    assert terms.parts["match_bg"].item() == pytest.approx(bg)
    assert terms.total.item() == pytest.approx(fg + 2.4 * bg)
    assert set(terms.parts) == {"match_fg", "match_bg"}
    with pytest.raises(ValueError, match="lambda_b"):
        match_loss(v_f, v_b, u_f, lambda_b=-1.0)


def test_similarity_floor_keeps_log_above_and_its_tangent_below():
    v_f = torch.cat([AT_06, OPPOSITE])  # cosines 0.6 and -1 with X
    u_f = torch.cat([X, X])
    floor = 0.05
    terms = match_loss(v_f, torch.cat([AT_08, AT_08]), u_f, lambda_b=1.0, similarity_floor=floor)
    tangent = -math.log(floor) - (-1.0 - floor) / floor
    assert terms.parts["match_fg"].item() == pytest.approx((-math.log(0.6) + tangent) / 2)
    just_above = torch.tensor([[floor, math.sqrt(1 - floor**2)]])
    just_below = torch.tensor([[floor - 1e-4, math.sqrt(1 - (floor - 1e-4) ** 2)]])
    above = match_loss(just_above, X, X, 0.0, similarity_floor=floor).parts["match_fg"].item()
    below = match_loss(just_below, X, X, 0.0, similarity_floor=floor).parts["match_fg"].item()
    assert below == pytest.approx(above + 1e-4 / floor, rel=1e-4)  # continuous, slope 1 / floor


def test_similarity_floor_gives_gradient_where_the_clamp_gives_none():
    """A pair with a negative cosine: the paper's clamp leaves it still, the floor pulls it."""
    for floor, moves in ((None, False), (0.05, True)):
        v_b = OPPOSITE.clone().add(torch.tensor([[0.0, 0.1]])).requires_grad_(True)
        prompt_loss(X, v_b, AT_06, lambda_t=0.0, similarity_floor=floor).total.backward()
        assert bool(v_b.grad.any()) is moves
    v_f = (OPPOSITE + torch.tensor([[0.0, 0.1]])).requires_grad_(True)
    match_loss(v_f, X, X, lambda_b=0.0, similarity_floor=0.05).total.backward()
    assert v_f.grad[0, 0] < 0  # descent (minus the gradient) turns it towards X


@pytest.mark.parametrize("floor", [0.0, -0.1, 0.9999, 1.5])
def test_similarity_floor_out_of_range_is_named(floor):
    with pytest.raises(ValueError, match="similarity_floor"):
        match_loss(X, X, X, lambda_b=1.0, similarity_floor=floor)


def test_prompt_loss_paper_and_reference_text_terms():
    u_b = torch.cat([AT_06, X])
    v_b = torch.cat([X, AT_08])  # sims with u_b: 0.6, 0.8
    u_f = torch.cat([AT_08, OPPOSITE])  # sims with u_b: 0.6*0.8+0.8*0.6 = 0.96, LOW
    image = -(math.log(0.6) + math.log(0.8)) / 2
    paper_text = -(math.log(1 - 0.96) + math.log(1 - LOW)) / 2
    reference_text = (math.log(0.96) + math.log(LOW)) / 2

    paper = prompt_loss(u_b, v_b, u_f, lambda_t=0.02)
    assert paper.parts["prompt_image"].item() == pytest.approx(image)
    assert paper.parts["prompt_text"].item() == pytest.approx(paper_text)
    assert paper.total.item() == pytest.approx(image + 0.02 * paper_text)

    reference = prompt_loss(u_b, v_b, u_f, lambda_t=0.02, text_term="reference")
    assert reference.parts["prompt_text"].item() == pytest.approx(reference_text)
    assert reference.total.item() == pytest.approx(image + 0.02 * reference_text)


def test_prompt_loss_ablation_switches():
    u_b, v_b, u_f = AT_06, X, AT_08  # sim(u_b, v_b) 0.6, sim(u_b, u_f) 0.96
    image_only = prompt_loss(u_b, v_b, u_f, lambda_t=0.5, use_text_term=False)
    assert set(image_only.parts) == {"prompt_image"}
    assert image_only.total.item() == pytest.approx(-math.log(0.6))

    text_only = prompt_loss(u_b, v_b, u_f, lambda_t=0.5, image_term=False)
    assert set(text_only.parts) == {"prompt_text"}
    assert text_only.total.item() == pytest.approx(-0.5 * math.log(1 - 0.96))

    with pytest.raises(ValueError, match="at least one"):
        prompt_loss(u_b, v_b, u_f, lambda_t=0.5, image_term=False, use_text_term=False)


def test_prompt_loss_rejects_unknown_text_term():
    with pytest.raises(ValueError, match="text_term"):
        prompt_loss(AT_06, X, AT_08, lambda_t=0.02, text_term="clims")


def test_text_only_prompt_loss_moves_only_the_prompt_away_from_the_class_text():
    u_b = AT_06.clone().requires_grad_(True)
    u_f = AT_08.clone()
    for form in ("paper", "reference"):
        u_b.grad = None
        prompt_loss(u_b, X, u_f, lambda_t=1.0, text_term=form, image_term=False).total.backward()
        step = u_b.detach() - 0.01 * u_b.grad
        before = clamped_similarity(u_b.detach(), u_f)
        assert clamped_similarity(step, u_f) < before


def test_refine_loss_hand_computed():
    v_f = torch.cat([AT_06, OPPOSITE])
    u_b = torch.cat([X, X])
    expected = -(math.log(1 - 0.6) + math.log(1 - LOW)) / 2
    assert refine_loss(v_f, u_b).item() == pytest.approx(expected)


def test_area_loss_is_the_mean_mask_value():
    masks = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.5]]])
    assert area_loss(masks).item() == pytest.approx((3.0 + 0.5) / 8)
    with pytest.raises(ValueError, match=r"\[P, H, W\]"):
        area_loss(torch.ones(2, 2))
    with pytest.raises(ValueError, match="zero pairs"):
        area_loss(torch.ones(0, 2, 2))
