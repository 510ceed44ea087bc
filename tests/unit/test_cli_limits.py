"""Issue 23, item 2: `vae-studio train` refuses a model over the limits (config.Limits) with one line
and exit 2, before it trains or writes anything (30 layers of 4096 once reached 3 GB)."""

import pytest

from vae_core.cli import main


@pytest.mark.parametrize(
    "hidden, limits, problem",
    [
        (["4"] * 20, {}, "at most 16 hidden layers"),
        (["256", "256"], {"VAE_STUDIO_MAX_PARAMETERS": "10000"}, "more than the limit of 10,000"),
    ],
    ids=["layers", "parameters"],
)
def test_train_refuses_a_model_over_the_limits_in_one_line(tmp_path, capsys, monkeypatch, hidden, limits, problem):
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    code = main(
        ["train", "--data", "digits", "--hidden", *hidden, "--epochs", "1", "--quiet", "--out-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and problem in err, err
    assert list(tmp_path.iterdir()) == []
