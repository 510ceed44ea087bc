"""Generate page: every tab produces its grid for a saved run."""

from apphelpers import assert_no_exception


def _open(app, stem):
    """Open the page on a run the way a link does: ?run=<id> (the picker preselects it)."""
    app.switch_page("app_pages/generate.py")
    app.query_params["run"] = stem
    app.run()
    assert_no_exception(app)
    return app


def _captions(app) -> str:
    return " | ".join(c for img in app.get("image") for c in img.captions)


def _image_sizes(app):
    return [img.value[0] for img in app.get("image")]


def test_every_tab_renders_its_grid(app, saved_runs):
    captions = _captions(_open(app, "vae-beta1"))
    assert "decoded z ~ N(0, T²I)" in captions
    assert "inputs" in captions and "decoded straight line" in captions
    assert "rows: z" in captions  # traversal sorted by KL
    assert "quantiles" in captions  # latent size 2: the manifold grid
    assert "reconstructions, epoch 2" in captions  # the timeline shows the last epoch
    texts = " ".join(i.value for i in app.info)
    assert "cvae" in texts  # per-class needs the conditional model, and says so


def test_temperature_and_seed_change_the_samples(app, saved_runs):
    _open(app, "vae-beta1")
    before = _image_sizes(app)[0]
    next(s for s in app.slider if s.label == "Temperature").set_value(0.3).run()
    assert_no_exception(app)
    assert _image_sizes(app)[0] != before


def test_cvae_per_class_grid(app, saved_runs):
    assert "one row per class" in _captions(_open(app, "cvae-run"))


def test_timeline_slider_moves_between_epochs(app, saved_runs):
    _open(app, "vae-beta1")
    slider = next(s for s in app.select_slider if s.label == "Epoch")
    assert slider.options == ["1", "2"]
    slider.set_value(1).run()
    assert "reconstructions, epoch 1" in _captions(app)


def test_a_conditional_run_decodes_one_chosen_class_in_every_view(app, saved_runs):
    _open(app, "cvae-run")
    picker = app.selectbox(key="decode_class")
    assert picker.options == [str(d) for d in range(10)]
    picker.set_value(7).run()
    assert_no_exception(app)
    captions = _captions(app)
    for view in ("decoded z ~ N(0, T²I) · class 7", "rows: z", "quantiles"):
        assert view in captions, (view, captions)
    assert captions.count("class 7") >= 3  # samples, traversals and the manifold, all of class 7
    picker = app.selectbox(key="decode_class")
    picker.set_value(2).run()
    assert "class 2" in _captions(app) and "class 7" not in _captions(app)


def test_an_autoencoder_traversal_speaks_of_no_kl_and_no_nats(app, saved_runs):
    _open(app, "ae-run")
    captions = _captions(app) + " ".join(c.value for c in app.caption)
    assert "nats" not in captions
    assert "An autoencoder has no prior and no KL" in " ".join(c.value for c in app.caption)
    assert "β=" not in app.caption[0].value


def test_the_play_button_says_pause_while_the_timeline_plays(app, saved_runs):
    _open(app, "vae-beta1")
    play = app.button(key="timeline_play")
    assert play.label == "Play"
    play.click().run()
    assert_no_exception(app)
    assert app.button(key="timeline_play").label == "Pause"
    assert app.session_state["timeline_epoch"] == 1  # started again from the first epoch
    app.button(key="timeline_play").click().run()
    assert app.button(key="timeline_play").label == "Play"


def test_a_vqvae_run_is_described_as_sampling_from_its_learned_code_prior(app):
    from apphelpers import train_checkpoint

    train_checkpoint("vq-run", model="vqvae")
    _open(app, "vq-run")
    assert not [w.value for w in app.warning if "plain autoencoder" in w.value]
    assert "learned categorical distribution over each slot's code" in " ".join(i.value for i in app.info)
    assert not [s for s in app.slider if s.label == "Temperature"]
    captions = _captions(app)
    assert "each slot's code drawn from the learned code prior" in captions
    assert "N(0, T²I)" not in captions and "snapped to its nearest codes" in captions
    assert "A VQ-VAE has no KL per dimension" in " ".join(c.value for c in app.caption)
