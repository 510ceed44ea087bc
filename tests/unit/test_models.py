import pytest
import torch

from vae_core.config import DEFAULT_HIDDEN, TrainConfig
from vae_core.errors import ConfigError
from vae_core.models import MODELS, VAE, VAEOutput, build_model


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_reference_model_is_the_notes_mlp():
    model = build_model(TrainConfig(), (1, 28, 28))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linear]
    assert shapes == [(784, 256), (256, 128), (128, 10), (128, 10), (10, 128), (128, 256), (256, 784)]
    assert model.fc_mu.out_features == 10 and model.fc_log_var.out_features == 10


def test_hidden_400_latent_20_matches_pytorch_examples():
    model = build_model(TrainConfig(hidden=(400,), latent_dim=20), (1, 28, 28))
    # pytorch/examples vae: fc1 784-400, fc21/fc22 400-20, fc3 20-400, fc4 400-784
    assert _count(model) == (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 30, 30)])
def test_every_model_returns_a_structured_output_of_the_input_shape(name, shape):
    config = TrainConfig(model=name, latent_dim=3, hidden=(16, 8))
    model = build_model(config, shape, num_classes=4)
    x = torch.rand(5, *shape)
    y = torch.tensor([0, 1, 2, 3, 0])
    out = model(x, y)
    assert isinstance(out, VAEOutput)
    assert out.logits.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 3)


def test_autoencoder_does_not_sample():
    model = build_model(TrainConfig(model="ae"), (1, 28, 28))
    out = model(torch.rand(4, 1, 28, 28))
    assert torch.equal(out.z, out.mu)
    assert torch.equal(out.logvar, torch.zeros_like(out.mu))


def test_reparameterisation_is_deterministic_given_the_generator_and_has_gradients():
    model = build_model(TrainConfig(latent_dim=4), (1, 8, 8))
    x = torch.rand(3, 1, 8, 8)
    a = model(x, generator=torch.Generator().manual_seed(1))
    b = model(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.z, b.z)
    a.z.sum().backward()
    assert model.fc_log_var.weight.grad is not None and model.fc_log_var.weight.grad.abs().sum() > 0


def test_cvae_decoder_depends_on_the_label():
    model = build_model(TrainConfig(model="cvae", latent_dim=2), (1, 8, 8), num_classes=3)
    z = torch.zeros(2, 2)
    out = model.decode(z, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_cvae_needs_labels_and_conv_needs_room():
    with pytest.raises(ConfigError, match="labelled"):
        build_model(TrainConfig(model="cvae"), (1, 28, 28), num_classes=0)
    with pytest.raises(ConfigError, match="16x16"):
        build_model(TrainConfig(model="conv"), (1, 8, 8))


def test_config_rejects_out_of_range_values_by_name():
    with pytest.raises(ConfigError, match="latent_dim"):
        TrainConfig(latent_dim=1)
    with pytest.raises(ConfigError, match="model"):
        TrainConfig(model="gan")
    with pytest.raises(ConfigError, match="unknown config field"):
        TrainConfig.from_dict({"nope": 1})
    assert TrainConfig.from_dict(TrainConfig(hidden=(400,)).to_dict()) == TrainConfig(hidden=(400,))


MLP_KEYS = [
    "encoder.0.0.weight",
    "encoder.0.0.bias",
    "encoder.0.2.weight",
    "encoder.0.2.bias",
    "fc_mu.weight",
    "fc_mu.bias",
    "fc_log_var.weight",
    "fc_log_var.bias",
    "decoder.0.weight",
    "decoder.0.bias",
    "decoder.2.weight",
    "decoder.2.bias",
    "decoder.4.weight",
    "decoder.4.bias",
]
CONV_KEYS = [
    "encoder.0.weight",
    "encoder.0.bias",
    "encoder.2.weight",
    "encoder.2.bias",
    "fc_mu.weight",
    "fc_mu.bias",
    "fc_log_var.weight",
    "fc_log_var.bias",
    "fc_decode.weight",
    "fc_decode.bias",
    "decoder.1.weight",
    "decoder.1.bias",
    "decoder.3.weight",
    "decoder.3.bias",
]


@pytest.mark.parametrize("name, keys", [("mlp", MLP_KEYS), ("conv", CONV_KEYS)])
def test_models_are_plain_torch_layers_with_the_checkpoint_keys_of_earlier_versions(name, keys):
    model = build_model(TrainConfig(model=name), (1, 28, 28))
    assert list(model.state_dict()) == keys  # checkpoints written before keep loading
    layers = [m for m in model.modules() if not isinstance(m, VAE)]
    assert all(type(m).__module__.startswith("torch.nn.") for m in layers), {type(m) for m in layers}


def test_each_model_has_its_default_widths_from_the_config():
    conv = build_model(TrainConfig(model="conv"), (1, 28, 28))
    assert [m.out_channels for m in conv.encoder if isinstance(m, torch.nn.Conv2d)] == list(DEFAULT_HIDDEN["conv"])
    mlp = build_model(TrainConfig(model="mlp"), (1, 28, 28))
    assert mlp.fc_mu.in_features == DEFAULT_HIDDEN["mlp"][-1]
    assert build_model(TrainConfig(model="conv", hidden=(8,)), (1, 16, 16)).fc_mu.in_features == 16 * 4 * 4


def test_the_configs_list_of_variational_models_is_the_models_own():
    """Pages read config.VARIATIONAL_MODELS before torch loads; each class's `variational` is the truth."""
    from vae_core.config import MODEL_NAMES, VARIATIONAL_MODELS

    assert tuple(MODELS) == MODEL_NAMES
    assert sorted(VARIATIONAL_MODELS) == sorted(name for name, (_, kind) in MODELS.items() if kind.variational)
