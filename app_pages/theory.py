"""Theory page: the maths of the VAE beside the live numbers of the run you are looking at.

Each claim links to the experiment that shows it, with that experiment's latest finding."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from ui import charts
from ui.data_access import run_dataset
from ui.findings import judge_note, visible_findings
from ui.runs import pick_run
from ui.widgets import nats, plain, show_error, wrapping_columns
from vae_core import experiments
from vae_core.errors import VAEStudioError
from vae_core.generate import prior_kind
from vae_core.losses import gaussian_kl
from vae_core.metrics import ACTIVE_KL_NATS, active_units, iwae_nll
from vae_core.vqvae import COMMITMENT

st.title("Theory, with your run's numbers")
view = pick_run("Run whose numbers to show")
last = view.epoch_metrics[-1] if view is not None and view.epoch_metrics else None
variational = view is None or view.model.variational  # a Gaussian latent: a KL in the loss
# What the run generates from: "none" (autoencoder: no prior, no ELBO), "gaussian", or "codes" (VQ-VAE:
# a learned categorical prior over codes, and a bound whose KL is -log p(codes)).
prior = "gaussian" if view is None else prior_kind(view.model)
recent = slice(-50, None)
# Read once per page run: a few small files beside the runs, so a finding survives a restart.
findings = visible_findings()
EXPERIMENTS_PAGE = "app_pages/experiments.py"


def live(text: str) -> None:
    """A line of live numbers, visibly set apart from the maths."""
    st.info(text, icon=":material/monitoring:")


def shown_by(name: str) -> None:
    """The experiment that shows this section's claim on the user's data: its latest finding when it
    has run, and a button that opens it on the Experiments page."""
    experiment = experiments.get(name)
    saved = findings.get(name)
    with st.container(border=True):
        text, action = wrapping_columns(f"claim_{name}", [4, 1], flexible=0, vertical_alignment="center")
        if saved is None:
            text.markdown(
                f"**See it happen:** the experiment *{experiment.title}* trains the runs that show this "
                "on your data and writes what they measured. It has not run here yet."
            )
        else:
            # The finding is read from a file: shown as plain text, never as Markdown.
            text.success(
                f"Latest finding of *{experiment.title}* (saved {plain(saved.saved[:10])}): " + plain(saved.finding),
                icon=":material/lightbulb:",
            )
            if saved.real_recognised is not None:
                text.caption(judge_note(saved.real_recognised))
        if action.button(
            "Open the experiment" if saved is None else "See its runs",
            key=f"open_{name}",
            icon=":material/science:",
            width="stretch",
        ):
            st.switch_page(EXPERIMENTS_PAGE, query_params={"experiment": name})


st.header("1 · Why an autoencoder cannot generate")
st.markdown(
    "An autoencoder learns $z = f(x)$ and $\\hat x = g(z)$ to reconstruct its input. Nothing asks the "
    "codes $z$ to fill any region in particular: they scatter in clumps with holes between them, so a "
    "$z$ drawn at random lands where the decoder has never been and decodes to noise. A VAE adds a "
    "term that pulls every posterior $q(z\\mid x)$ towards one fixed prior $p(z)=\\mathcal N(0, I)$, "
    "so the region the prior covers is filled and every draw from it decodes to something plausible."
)
shown_by("ae-vs-vae")

st.header("2 · Encoder outputs and the reparameterisation trick")
st.markdown(
    "The encoder outputs two vectors per image: the mean $\\mu(x)$ (layer `fc_mu`) and the log-variance "
    "$\\log\\sigma^2(x)$ (layer `fc_log_var`; the log keeps $\\sigma^2$ positive without a constraint). "
    "Sampling $z\\sim\\mathcal N(\\mu, \\sigma^2)$ is not differentiable in $\\mu,\\sigma$; writing it as"
)
st.latex(r"z = \mu + \sigma \odot \varepsilon,\qquad \varepsilon \sim \mathcal N(0, I)")
st.markdown("moves the randomness into $\\varepsilon$, so gradients flow through $\\mu$ and $\\sigma$.")
c1, c2 = wrapping_columns("kl_demo", [1, 2], flexible=1, vertical_alignment="top")
mu = c1.slider("μ", -3.0, 3.0, 1.0, 0.1, key="demo_mu")
log_var = c1.slider("log σ²", -4.0, 2.0, -1.0, 0.1, key="demo_logvar")
kl_value = float(gaussian_kl(torch.tensor([mu]), torch.tensor([log_var]))[0])
c1.metric("KL(q ‖ N(0,1))", f"{kl_value:.3f} nats")
grid = np.linspace(-5, 5, 400)
sigma = math.exp(0.5 * log_var)
eps = np.random.default_rng(0).standard_normal(400)
figure = go.Figure(
    [
        go.Scatter(
            x=grid,
            y=np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi),
            name="prior N(0, 1)",
            line={"color": "#888", "dash": "dash"},
        ),
        go.Scatter(
            x=grid,
            y=np.exp(-0.5 * ((grid - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)),
            name="q(z|x) = N(μ, σ²)",
            line={"color": charts.COLOURS["kl"]},
        ),
        go.Histogram(
            x=mu + sigma * eps,
            histnorm="probability density",
            name="z = μ + σ·ε (400 draws)",
            opacity=0.35,
            marker={"color": charts.COLOURS["kl"]},
            nbinsx=60,
        ),
    ]
)
figure.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h"})
c2.plotly_chart(figure, key="reparam_demo")

st.header("3 · The loss: reconstruction + KL")
st.latex(  # two lines: on one, a window of 900 px cut it
    r"\begin{aligned}\mathcal L(x) &= \underbrace{-\,\mathbb E_{q(z\mid x)}\big[\log p(x\mid z)\big]}"
    r"_{\text{reconstruction}} \\ &\quad+\; \beta\,\underbrace{\mathrm{KL}\big(q(z\mid x)\,\|\,"
    r"\mathcal N(0, I)\big)}_{\text{regulariser}}\end{aligned}"
)
st.markdown(
    "Reconstruction, summed over the $D$ pixels: **BCE** is the Bernoulli likelihood, "
    "$-\\sum_i x_i\\log\\hat x_i + (1-x_i)\\log(1-\\hat x_i)$; **MSE** is a Gaussian likelihood with "
    "variance 1, $\\tfrac12\\sum_i (x_i-\\hat x_i)^2 + \\tfrac D2\\log 2\\pi$. The KL of two Gaussians "
    "has a closed form, one term per latent dimension $j$:"
)
st.latex(r"\mathrm{KL} = \tfrac12 \sum_{j=1}^{d} \big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big)")
shown_by("mse-vs-bce")
if view is not None and len(view.curves) and prior == "codes":
    recon, total = float(view.curves.recon[recent].mean()), float(view.curves.total[recent].mean())
    live(
        f"Run `{view.run_id}` is a VQ-VAE: its latent is a code per slot, not a Gaussian, so training has no KL "
        f"term; its prior over codes is learned apart. It minimises the reconstruction ({view.config.recon}) + "
        f"the codebook term + {COMMITMENT:g} × the commitment term; mean of the last 50 steps: reconstruction "
        f"**{nats(recon)}** + codebook terms **{nats(total - recon)}** = total **{nats(total)}** nats per image."
        + (
            " (This run's file was written before its total counted the codebook terms: its curve shows the "
            "reconstruction alone.)"
            if total == recon
            else ""
        )
    )
elif view is not None and len(view.curves) and not variational:
    live(
        f"Run `{view.run_id}` is an autoencoder: no prior, so no KL term and no ELBO. Its loss is the "
        f"reconstruction alone ({view.config.recon}), mean of the last 50 steps "
        f"**{nats(float(view.curves.recon[recent].mean()))}** per image."
    )
elif view is not None and len(view.curves):
    live(
        f"Run `{view.run_id}` ({view.config.recon}, β={view.curves.beta[-1]:g} now), mean of the last 50 steps: "
        f"reconstruction **{nats(float(view.curves.recon[recent].mean()))}** + β × KL "
        f"**{nats(float(view.curves.kl[recent].mean()))}** = total **{nats(float(view.curves.total[recent].mean()))}** "
        "nats per image."
    )

st.header("4 · The ELBO, from Jensen's inequality")
st.latex(
    r"\begin{aligned}\log p(x) &= \log \mathbb E_{q(z\mid x)}\!\left[\frac{p(x\mid z)\,p(z)}{q(z\mid x)}\right]"
    r" \\ &\ge\; \mathbb E_{q(z\mid x)}\!\left[\log \frac{p(x\mid z)\,p(z)}{q(z\mid x)}\right] \\"
    r" &= \mathbb E_q[\log p(x\mid z)] - \mathrm{KL}(q(z\mid x)\,\|\,p(z)) \\ &= \mathrm{ELBO}(x)"
    r"\end{aligned}"
)
st.markdown(
    "$\\log$ is concave, so the log of an average is at least the average of the logs. The right side "
    "is the evidence lower bound (ELBO); the loss above is $-$ELBO (with β = 1). The gap is "
    "$\\mathrm{KL}(q(z\\mid x)\\,\\|\\,p(z\\mid x))$. Averaging $k$ importance weights inside the log "
    "(IWAE, Burda et al. 2016) gives a tighter bound that approaches $\\log p(x)$ as $k$ grows."
)
IWAE_IMAGES = 200
if view is not None and last is not None and prior == "codes":
    live(
        f"Test −ELBO at epoch {last['epoch']}: **{nats(last['test_neg_elbo'])}** nats, over all the test images: "
        f"reconstruction **{nats(last['test_recon'])}** + KL **{nats(last['test_kl'])}**. Run `{view.run_id}` is a "
        "VQ-VAE: its encoder puts all of q(codes|x) on one code per slot, so the KL to its learned prior is "
        "−log p(codes). A uniform prior would cost log K per slot instead, "
        f"{view.model.slots} × log {view.model.codebook.shape[0]} = "
        f"**{nats(view.model.slots * math.log(view.model.codebook.shape[0]))}** nats. With a single code "
        "per slot, the importance-weighted bound is this bound: there is no IWAE bound to compute."
    )
elif view is not None and last is not None and not variational:
    live(
        f"Run `{view.run_id}` is an autoencoder: it has no q(z|x) and no prior, so no ELBO and no IWAE bound. "
        f"Its test reconstruction error at epoch {last['epoch']}: **{nats(last.get('test_recon'))}**."
    )
elif view is not None and last is not None:
    live(f"Test −ELBO at epoch {last['epoch']}: **{nats(last['test_neg_elbo'])}** nats, over all the test images.")
    c1, c2 = wrapping_columns("iwae_row", [2, 3], flexible=1)
    k = c1.select_slider("Importance samples k", [1, 10, 50, 200, 1000], value=50)
    if c1.button(
        "Compute the IWAE bound",
        width="stretch",
        help=f"On the first {IWAE_IMAGES} test images, with k samples of z per image.",
    ):
        try:
            data = run_dataset(view)
            x = data.test_x[:IWAE_IMAGES]
            y = data.test_y[:IWAE_IMAGES] if data.test_y is not None else None
            with st.spinner("Sampling…"):
                bound = iwae_nll(
                    view.model, x, y, recon=view.config.recon, k=k, generator=torch.Generator().manual_seed(0)
                )
                elbo = iwae_nll(
                    view.model, x, y, recon=view.config.recon, k=1, generator=torch.Generator().manual_seed(0)
                )
            c2.success(
                f"On the first {IWAE_IMAGES} test images: k=1 (the ELBO): **{elbo:,.2f}** nats · "
                f"k={k}: **{bound:,.2f}** nats · the bound tightened by **{elbo - bound:,.2f}** nats."
            )
            st.caption(
                f"Why k=1 is not the test −ELBO above: both estimate the same −ELBO, but k=1 here averages "
                f"{IWAE_IMAGES} images, not all {len(data.test_x):,}, and estimates the KL from one sampled z "
                "(log q(z|x) − log p(z)) where the test −ELBO uses its closed form; with different images "
                "and that extra noise, the two differ by a few nats."
            )
        except VAEStudioError as error:
            show_error(error, c2)

st.header("5 · The scale trap: mean over pixels against sum over dimensions")
st.markdown(
    "A common bug: `F.mse_loss(x_hat, x)` averages over the $D$ pixels, while the KL is summed over "
    "the $d$ latent dimensions. The reconstruction shrinks $D$ times against the KL, which is the same "
    "as training with $\\beta = D$; the KL wins, the posterior collapses to the prior and every sample "
    "looks alike. The fixes are equivalent: **sum over pixels** (as here), **average over the batch** "
    "only, or keep the mean and compensate with **a small β** (β = 1/D)."
)
shown_by("scale-trap")
if view is not None and len(view.curves) and variational:
    pixels = int(np.prod(view.model.image_shape))
    recon = float(view.curves.recon[recent].mean())
    kl = float(view.curves.kl[recent].mean())
    live(
        f"This run has D = {pixels} pixels. Its reconstruction term is **{recon:,.1f}** nats summed; averaged "
        f"over pixels it would be **{recon / pixels:,.3f}**, against a KL of **{kl:,.2f}**: the KL would weigh "
        f"{pixels}× more, as if β were {pixels * view.config.beta:g}."
    )

st.header("6 · Blurry samples")
st.markdown(
    "With a Gaussian or Bernoulli decoder the best reconstruction of an uncertain $z$ is the *average* "
    "of the images it could have come from, and an average of sharp digits is a blurry one. A larger "
    "β makes posteriors wider and overlap more: blurrier still. Sharper decoders (autoregressive, "
    "adversarial, or discrete latents as in VQ-VAE) are the usual remedies."
)
shown_by("beta")

st.header("7 · Posterior collapse, and its fixes")
st.markdown(
    "When the decoder can do well without $z$, the cheapest way to lower the loss is to set "
    "$q(z_j\\mid x) = p(z_j)$ for some or all dimensions: their KL drops to 0 and they carry no "
    "information. **KL annealing** starts β at 0 and raises it, so the decoder learns to use $z$ first; "
    "**free bits** count each dimension's KL as at least λ nats, so there is nothing to gain below λ; "
    "**β < 1** weakens the pull of the prior."
)
shown_by("collapse")
if view is not None and last is not None and prior == "codes":
    usage = view.model.codebook_usage()
    live(
        f"Run `{view.run_id}` is a VQ-VAE: it has no Gaussian dimensions to collapse. Its failure of the same "
        f"kind is dead codes: {usage['codes_used']} of its {usage['codebook_size']} codes are in use (by at least "
        f"1% of some slot's images), an effective {usage['perplexity']:.1f} codes per slot."
    )
elif view is not None and last is not None and not variational:
    live(
        f"Run `{view.run_id}` is an autoencoder: with no KL term there is nothing to collapse to, so it has no "
        "KL per dimension to show."
    )
elif view is not None and last is not None:
    kl_dims = np.asarray(last["kl_per_dim"])
    # Counted from the KL the bars show, by the one definition: a run saved before it stored a count
    # by another rule, which contradicted its own chart.
    active = active_units(kl_dims)
    live(
        f"Epoch {last['epoch']}: **{active} of {len(kl_dims)}** latent dimensions are active (a test KL of at "
        f"least {ACTIVE_KL_NATS:g} nats each); the grey bars, {len(kl_dims) - active}, have collapsed to the prior."
    )
    st.plotly_chart(charts.kl_per_dim_figure(kl_dims, view.config.free_bits), key="theory_kl")

st.header("8 · Variants")
st.markdown(
    "- **Conditional VAE**: encoder and decoder both see a label $y$, so $p(x\\mid z, y)$ can draw a chosen "
    "class and $z$ keeps the style. Here: model `cvae`, then *Generate → Per class*.\n"
    "- **β-VAE**: β > 1 trades reconstruction for a more factorised, often more interpretable latent "
    "(see *Generate → Traversals*). Here: the β slider.\n"
    "- **VQ-VAE** replaces the Gaussian latent with a learned codebook of discrete vectors and a "
    "learned prior over codes. Here: model `vqvae`, and *Experiments → VQ-VAE against VAE*.\n"
    "- **Hierarchical VAEs** (Ladder VAE, NVAE) stack several layers of latents so coarse and fine "
    "structure get their own. *Not implemented in this studio yet.*"
)
shown_by("vqvae-vs-vae")
RECON_NAMES = {"bce": "summed BCE (Bernoulli)", "mse": "summed MSE (Gaussian, variance 1)"}
footer = (
    "Reference model of the note: MLP 784-256-128 → z=10 (fc_mu, fc_log_var) → 128-256-784, Adam lr 1e-3, "
    "a reconstruction summed over pixels + KL."
)
if view is not None:
    loss = (
        RECON_NAMES.get(view.config.recon, view.config.recon)
        + {"gaussian": " + β × KL", "none": " alone", "codes": f" + codebook + {COMMITMENT:g} × commitment"}[prior]
    )
    footer += f" The run shown, `{view.run_id}`: {view.config.model}, loss = {loss}."
st.caption(footer)
