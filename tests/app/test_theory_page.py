"""Theory page: the maths, with the live numbers of the chosen run and the interactive demos."""

import json

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, markdown_texts, plotly_specs

from ui.widgets import plain
from vae_core.config import TrainConfig


def _open(app, run="vae-beta1"):
    app.switch_page("app_pages/theory.py")
    app.query_params["run"] = run
    return app.run()


def test_maths_and_live_numbers_of_the_run(app, saved_runs):
    _open(app)
    assert_no_exception(app)
    assert len(app.latex) >= 4  # reparameterisation, loss, KL, Jensen
    live = " ".join(i.value for i in app.info)
    assert "Run `vae-beta1`" in live and "reconstruction" in live
    assert "D = 64 pixels" in live and "as if β were 64" in live  # 8x8 digits, beta 1
    assert "latent dimensions are active" in live


def test_reparameterisation_demo_computes_the_kl(app, saved_runs):
    _open(app)
    app.slider(key="demo_mu").set_value(0.0)
    app.slider(key="demo_logvar").set_value(0.0).run()
    kl = next(m for m in app.metric if m.label == "KL(q ‖ N(0,1))")
    assert kl.value == "0.000 nats"
    app.slider(key="demo_mu").set_value(2.0).run()
    assert next(m for m in app.metric if m.label == "KL(q ‖ N(0,1))").value == "2.000 nats"  # mu^2 / 2


def test_iwae_button_tightens_the_bound(app, saved_runs):
    _open(app)
    next(b for b in app.button if b.label.startswith("Compute the IWAE bound")).click()
    app.run()
    assert_no_exception(app)
    message = " ".join(s.value for s in app.success)
    assert "k=1 (the ELBO)" in message and "tightened by" in message and "first 200 test images" in message
    why = " ".join(c.value for c in app.caption)
    assert "Why k=1 is not the test −ELBO above" in why and "not all 359" in why


def test_the_footer_names_the_runs_own_reconstruction_loss(app, saved_runs):
    _open(app)
    assert "loss = summed BCE (Bernoulli) + β × KL" in app.caption[-1].value  # the run's recon, not the note's MSE


def test_an_autoencoder_run_gets_no_kl_no_bound_and_says_why(app, saved_runs):
    _open(app, run="ae-run")
    assert_no_exception(app)
    live = " ".join(i.value for i in app.info)
    assert "is an autoencoder: no prior, so no KL term and no ELBO" in live
    assert "no ELBO and no IWAE bound" in live and "test reconstruction error" in live
    assert "Test −ELBO" not in live and "latent dimensions are active" not in live and "as if β were" not in live
    assert not any(b.label.startswith("Compute the IWAE bound") for b in app.button)
    assert not [s for s in plotly_specs(app) if any(t.get("name") == "KL per dimension" for t in s["data"])]
    assert "loss = summed BCE (Bernoulli) alone" in app.caption[-1].value


# -- each claim linked to its experiment, with its latest finding ------------------------------------
CLAIMS = ["ae-vs-vae", "mse-vs-bce", "scale-trap", "beta", "collapse", "vqvae-vs-vae"]  # in the page's order


@pytest.fixture
def saved_finding(saved_runs):
    """An ae-vs-vae finding saved beside two of the test runs (a crafted sentence, with Markdown that
    must stay text); whatever finding the folder held before is put back afterwards."""
    from vae_core.experiments import FINDINGS_FOLDER, ExperimentResult, RunResult, get, save_finding

    path = CHECKPOINTS / FINDINGS_FOLDER / "ae-vs-vae.json"
    before = path.read_bytes() if path.exists() else None
    config = TrainConfig(data="digits")
    runs = (RunResult("AE", config.replace(model="ae"), {}, (), None), RunResult("VAE", config, {}, (), None))
    save_finding(
        CHECKPOINTS,
        ExperimentResult(get("ae-vs-vae"), runs, "The AE drifted [away](https://example.com)."),
        ["ae-run", "vae-beta1"],
    )
    yield path
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


def test_each_claim_links_to_its_experiment_and_says_whether_it_ran(app, saved_runs):
    from vae_core.experiments import latest_findings

    _open(app)
    assert_no_exception(app)
    assert [b.key for b in app.button if (b.key or "").startswith("open_")] == [f"open_{name}" for name in CLAIMS]
    findings = latest_findings(CHECKPOINTS)  # other tests may have run some experiments in this folder
    shown = " ".join(s.value for s in app.success)
    not_run = sum("It has not run here yet" in text for text in markdown_texts(app))
    assert not_run == len([name for name in CLAIMS if name not in findings])
    assert all(plain(saved.finding) in shown for saved in findings.values())


def test_the_latest_finding_is_shown_as_text_beside_its_claim(app, saved_finding):
    _open(app)
    assert_no_exception(app)
    finding = next(s.value for s in app.success if "Autoencoder against VAE" in s.value)
    assert plain("The AE drifted [away](https://example.com).") in finding  # a link from a file stays text
    assert app.button(key="open_ae-vs-vae").label == "See its runs"


def test_a_finding_whose_runs_are_gone_is_not_shown(app, saved_finding):
    from vae_core.experiments import latest_findings

    record = json.loads(saved_finding.read_text())
    record["runs"][0][1] = "deleted-run"
    saved_finding.write_text(json.dumps(record))
    assert "ae-vs-vae" not in latest_findings(CHECKPOINTS)
    _open(app)
    assert not any("Autoencoder against VAE" in s.value for s in app.success)
    assert app.button(key="open_ae-vs-vae").label == "Open the experiment"


def test_the_link_opens_the_experiment_first_with_its_saved_runs_played_over_the_epochs(app, saved_finding):
    _open(app)
    app.button(key="open_ae-vs-vae").click().run()
    assert_no_exception(app)
    assert app.title[0].value.startswith("Experiments")
    assert app.query_params["experiment"] == "ae-vs-vae"
    assert app.header[0].value == "Autoencoder against VAE"  # the linked experiment comes first
    assert "aggregate KL is" in " ".join(s.value for s in app.success)  # measured again from the saved runs
    assert app.select_slider(key="epochs_ae-vs-vae_epoch").value == 2
    titles = [s["layout"].get("title", {}).get("text") for s in plotly_specs(app)]
    assert "AE · epoch 2" in titles and "VAE · epoch 2" in titles  # the two runs' scatters side by side
    # AppTest's next run() goes back to the page it was given; stay on the page the link opened, as a browser does.
    app.switch_page("app_pages/experiments.py")
    app.select_slider(key="epochs_ae-vs-vae_epoch").set_value(1).run()
    assert_no_exception(app)
    titles = [s["layout"].get("title", {}).get("text") for s in plotly_specs(app)]
    assert "AE · epoch 1" in titles and "VAE · epoch 1" in titles
    app.button(key="epochs_ae-vs-vae_play").click().run()
    assert app.button(key="epochs_ae-vs-vae_play").label == "Pause"


# -- one definition of an active dimension: the count in words and the grey bars agree ------------------
GREY = "#bbbbbb"
# The KL per dimension of the collapse experiment's β=8 run that said "8 of 10 are active" above a chart
# with 8 grey bars: what a file written before metrics.ACTIVE_KL_NATS holds.
LEGACY_KL = [0.01, 0.02, 0.955, 0.03, 0.04, 0.02, 0.13, 0.01, 0.02, 0.03]


def _collapsed_run(name: str, **overrides):
    """A run on digits in which some latent dimensions collapse and some do not (0.2 s of training:
    at seed 0 two of its six dimensions end below the threshold, four above it)."""
    from apphelpers import train_checkpoint

    return train_checkpoint(name, **{"latent_dim": 6, "epochs": 5, "batch_size": 32, "lr": 5e-3, **overrides})


def _kl_bars(app) -> tuple[list[str], str]:
    spec = next(s for s in plotly_specs(app) if any(t.get("name") == "KL per dimension" for t in s["data"]))
    return spec["data"][0]["marker"]["color"], spec["layout"]["title"]["text"]


def _active_sentence(app) -> str:
    return next(i.value for i in app.info if "latent dimensions are active" in i.value)


def test_the_active_count_in_words_is_the_count_of_coloured_bars(app):
    from vae_core.checkpoint import load_checkpoint

    path = _collapsed_run("vae-partly-collapsed")
    last = load_checkpoint(path).state.history.epochs[-1]
    _open(app, run="vae-partly-collapsed")
    assert_no_exception(app)
    colours, title = _kl_bars(app)
    grey = colours.count(GREY)
    assert 0 < grey < 6  # some dimensions collapsed, not all
    assert f"**{6 - grey} of 6** latent dimensions are active" in _active_sentence(app)
    assert f"the grey bars, {grey}, have collapsed" in _active_sentence(app)
    assert title == f"KL per dimension ({grey} collapsed, grey)"
    assert last["active_units"] == 6 - grey  # the stored count, as eval and inspect give it


def test_a_file_saved_under_the_old_rule_is_counted_by_its_kl(app, monkeypatch):
    from vae_core import checkpoint

    save = checkpoint.save_trainer_checkpoint

    def save_as_before(trainer, *args, **kwargs):
        # The last epoch as the variance-of-means rule wrote it: 8 "active" over 8 grey bars.
        trainer.history.epochs[-1].update(kl_per_dim=LEGACY_KL, active_units=8)
        return save(trainer, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_trainer_checkpoint", save_as_before)
    _collapsed_run("vae-legacy-count", latent_dim=10, epochs=1)
    _open(app, run="vae-legacy-count")
    assert_no_exception(app)
    colours, title = _kl_bars(app)
    assert colours.count(GREY) == 8 and title == "KL per dimension (8 collapsed, grey)"
    assert "**2 of 10** latent dimensions are active" in _active_sentence(app)
    assert "the grey bars, 8, have collapsed" in _active_sentence(app)


# -- a VQ-VAE run: a learned prior over codes, and a bound that eval computes too ------------------------
def test_a_vqvae_run_has_a_code_prior_and_the_bound_eval_reports(app, capsys):
    from apphelpers import train_checkpoint

    from ui.widgets import nats
    from vae_core.cli import main

    path = train_checkpoint("vq-theory", model="vqvae")
    assert main(["eval", str(path), "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["test_kl"] > 0  # -log p(codes): part of the bound, not left out
    assert evaluated["test_neg_elbo"] == pytest.approx(evaluated["test_recon"] + evaluated["test_kl"])
    _open(app, run="vq-theory")
    assert_no_exception(app)
    live = " ".join(i.value for i in app.info)
    assert "is a VQ-VAE" in live and "is an autoencoder" not in live and "no ELBO" not in live
    assert f"Test −ELBO at epoch 2: **{nats(evaluated['test_neg_elbo'])}** nats" in live
    assert f"reconstruction **{nats(evaluated['test_recon'])}** + KL **{nats(evaluated['test_kl'])}**" in live
    assert "−log p(codes)" in live and "codebook terms" in live and "dead codes" in live
    assert not any(b.label.startswith("Compute the IWAE bound") for b in app.button)
    assert "loss = summed BCE (Bernoulli) + codebook + 0.25 × commitment" in app.caption[-1].value


def test_a_finding_about_recognised_samples_says_what_recognised_means_and_its_ceiling(app, saved_finding):
    record = json.loads(saved_finding.read_text())
    saved_finding.write_text(json.dumps(record | {"real_recognised": 0.577}))
    _open(app)
    assert_no_exception(app)
    notes = [c.value for c in app.caption if c.value.startswith("Recognised: ")]  # other tests' findings too
    assert any("probability ≥ 0.9. It recognises 58% of the dataset's real test images" in note for note in notes)
    app.switch_page("app_pages/experiments.py")
    app.run()  # not the experiment a link asked for: its last finding as a caption, the judge's note under it
    assert_no_exception(app)
    notes = [c.value for c in app.caption if c.value.startswith("Recognised: ")]
    assert any("It recognises 58% of the dataset's real test images" in note for note in notes)
