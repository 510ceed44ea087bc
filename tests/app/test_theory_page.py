"""Theory page: the maths, with the live numbers of the chosen run and the interactive demos."""

from apphelpers import assert_no_exception, plotly_specs


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
