"""VQ-VAE: snapping to codes, the straight-through gradient, its two loss terms, the learned prior."""

import pytest
import torch

from vae_core.config import TrainConfig
from vae_core.models import build_model
from vae_core.vqvae import CODEBOOK_SIZE, COMMITMENT, VQVAE


def _model(latent_dim=4):
    model = VQVAE((1, 4, 4), latent_dim, (8,))
    with torch.no_grad():  # codes k = (k, -k), so the nearest code of (a, b) is easy to tell by hand
        model.codebook.copy_(
            torch.stack([torch.arange(CODEBOOK_SIZE).float(), -torch.arange(CODEBOOK_SIZE).float()], 1)
        )
    return model


def test_each_slot_snaps_to_its_nearest_code():
    model = _model()
    z = torch.tensor([[0.2, -0.1, 2.6, -3.1], [40.2, -39.9, 0.9, -1.2]])
    assert model.nearest_codes(z).tolist() == [[0, 3], [40, 1]]
    assert model.quantize(z).tolist() == [[0.0, 0.0, 3.0, -3.0], [40.0, -40.0, 1.0, -1.0]]


def test_the_decoder_gradient_goes_straight_through_to_the_encoder_output():
    model = _model().train()
    x = torch.rand(3, 1, 4, 4)
    output = model(x)
    assert torch.equal(output.z, model.quantize(output.mu))  # the decoder saw codes
    (grad_z,) = torch.autograd.grad(output.logits.sum(), output.z, retain_graph=True)
    (grad_mu,) = torch.autograd.grad(output.logits.sum(), output.mu)
    assert torch.allclose(grad_z, grad_mu)


def test_codebook_loss_is_codebook_plus_commitment_each_training_its_own_side():
    model = _model()
    mu = torch.tensor([[0.2, -0.1, 2.6, -3.1]], requires_grad=True)
    squared = float(((mu.detach() - torch.tensor([[0.0, 0.0, 3.0, -3.0]])) ** 2).sum())
    loss = model.codebook_loss(mu)
    assert float(loss.detach()) == pytest.approx((1 + COMMITMENT) * squared)
    loss.backward()
    assert torch.allclose(mu.grad, COMMITMENT * 2 * (mu.detach() - torch.tensor([[0.0, 0.0, 3.0, -3.0]])))
    assert model.codebook.grad[[0, 3]].abs().sum() > 0 and model.codebook.grad[5:].abs().sum() == 0


def test_the_total_loss_is_what_is_optimised_reconstruction_and_codebook_terms():
    from vae_core.losses import reconstruction_nll, vae_loss

    model = _model()
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    output = model(x)
    terms = vae_loss(output, x, variational=False)
    recon = reconstruction_nll(output.logits, x, "bce").mean()
    assert terms.recon.item() == pytest.approx(recon.item())
    assert terms.total.item() == pytest.approx((recon + model.codebook_loss(output.mu)).item())
    assert (terms.total - terms.recon).item() > 0


def test_the_prior_learns_code_frequencies_in_training_only_and_samples_from_them():
    model = _model()
    model.eval()
    before = model.code_counts.clone()
    model(torch.rand(2, 1, 4, 4))
    assert torch.equal(model.code_counts, before)
    with torch.no_grad():
        model.code_counts.zero_()
        model.code_counts[0, 7] = model.code_counts[1, 2] = 1.0
    z = model.sample_prior(5, torch.Generator().manual_seed(0))
    assert z.tolist() == [[7.0, -7.0, 2.0, -2.0]] * 5
    with torch.no_grad():
        model.code_counts[0, 9] = 0.5  # code 7 twice as likely as 9: at temperature 0, always 7
    assert model.sample_prior(50, torch.Generator().manual_seed(0), temperature=0.0)[:, 0].eq(7.0).all()
    with torch.no_grad():
        model.code_counts[0, 9] = 0.0
    usage = model.codebook_usage()
    assert usage["codes_used"] == 2 and usage["perplexity"] == pytest.approx(1.0)
    model.train()
    model(torch.rand(2, 1, 4, 4))
    assert not torch.equal(model.code_counts, before)


def test_an_odd_latent_size_gets_slots_of_one_number():
    model = build_model(TrainConfig(model="vqvae", latent_dim=5), (1, 8, 8))
    assert (model.slots, model.codebook.shape) == (5, (CODEBOOK_SIZE, 1))
    assert model(torch.rand(2, 1, 8, 8)).z.shape == (2, 5)


def test_trains_saves_and_loads_with_its_codebook_and_prior(digits, tmp_path):
    from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
    from vae_core.loop import train

    config = TrainConfig(model="vqvae", data="digits", hidden=(32,), latent_dim=4, epochs=1, device="cpu")
    start = build_model(config, digits.image_shape)
    trainer = train(config, digits)
    assert not torch.equal(trainer.model.codebook.detach().cpu(), start.codebook)  # the codebook term trained it
    curves = trainer.history.curves()
    assert (curves.total > curves.recon).all()  # each step's total has the codebook terms it optimised
    path = save_trainer_checkpoint(trainer, "vq", "finished", tmp_path / "vq.safetensors")
    model = load_checkpoint(path).build_model()
    assert torch.equal(model.code_counts, trainer.model.code_counts.cpu())
    assert torch.equal(model.codebook.detach(), trainer.model.codebook.detach().cpu())


def test_the_test_bound_is_the_reconstruction_plus_minus_log_prior_of_the_codes(digits):
    """eval's -ELBO of a VQ-VAE, against the same computed here: one code per slot has all of q's
    mass, so KL(q || p) = -log p(codes) under the learned prior, summed over the slots."""
    from vae_core.losses import reconstruction_nll
    from vae_core.metrics import evaluate

    model = build_model(TrainConfig(model="vqvae", latent_dim=4, hidden=(16,)), digits.image_shape)
    x = digits.test_x[:200]
    with torch.no_grad():
        model.train()
        model(digits.train_x[:256])  # the prior learns some code frequencies
        model.eval()
        z_e, _ = model.encode(x)
        codes = model.nearest_codes(z_e)
        prior = model.code_counts / model.code_counts.sum(1, keepdim=True)
        minus_log_prior = -torch.stack([prior[slot, codes[:, slot]].log() for slot in range(model.slots)]).sum(0)
        recon = reconstruction_nll(model.decode(z_e), x, "bce")
    result = evaluate(model, x, None, recon="bce")
    assert result.kl == pytest.approx(float(minus_log_prior.mean()), rel=1e-5)
    assert result.recon == pytest.approx(float(recon.mean()), rel=1e-5)
    assert result.neg_elbo == pytest.approx(result.recon + result.kl, rel=1e-9)
    assert result.kl > 0 and result.active_units == 0  # no Gaussian dimension to call active


def test_prior_samples_come_from_the_learned_code_prior_not_from_a_gaussian():
    from vae_core import generate

    model = _model().eval()
    with torch.no_grad():
        model.code_counts.zero_()
        model.code_counts[0, 7] = model.code_counts[1, 2] = 1.0  # one code per slot has all the mass
    pictures = generate.prior_samples(model, 6, seed=3)
    expected = generate.decode(model, torch.tensor([[7.0, -7.0, 2.0, -2.0]]).repeat(6, 1))
    assert (pictures == expected).all()
    gaussian = generate.decode(model, torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))
    assert not (pictures == gaussian).all()
    assert generate.prior_kind(model) == "codes"
