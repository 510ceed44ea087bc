"""Who may see and drive which run: the one place pages ask.

Two models (README, Security):
- Local, the default: the app listens on 127.0.0.1 and is one person's, so every tab sees and drives
  every run, and nobody signs in.
- Served: on when Streamlit's login is configured (an `[auth]` section in .streamlit/secrets.toml)
  or VAE_STUDIO_MULTI_USER=1 (a host that provides `st.user` itself). Every page asks for a login
  (`st.login`, OIDC). A run belongs to the person who started, resumed, queued or uploaded it (its
  owner id, kept in its checkpoint), who alone sees and drives it; a run with no owner (trained by
  the CLI into the folder, by whoever runs the server) is shown to everyone and driven by no one here.

Whether the app is served and who is signed in (their owner id) are told by identity.py, below
this module and session.py alike.
"""

from __future__ import annotations

import streamlit as st

from . import session
from .identity import MULTI_USER_ENV, ServedModeError, current_owner, login_configured, served
from .widgets import plain


def stop_on_a_broken_served_mode() -> None:
    """At server start: settings that cannot be read stop the server, with what to fix on stderr."""
    try:
        served()
    except ServedModeError as error:
        import sys

        print(f"VAE Studio: not started: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def check_served_mode() -> None:
    """On every page, first: settings that cannot be read stop the page with what to fix."""
    try:
        served()
    except ServedModeError as error:
        st.error(f"VAE Studio will not serve any page: {error}.", icon=":material/lock:")
        st.stop()


def can_see(owner: str | None) -> bool:
    """Whether this session may see (list, open, decode) a run owned by `owner`: locally every run;
    served, its owner's own runs and the shared ones (no owner)."""
    return not served() or owner is None or owner == current_owner()


def visible_records(records: list) -> list:
    """The runs of a listing this session may see: can_see for each, with the served mode and the owner
    looked up once (a folder of 50,000 runs asked them 50,000 times, 3 s a page). A checkpoint that
    cannot be read names no owner we could check: shown locally (to say what is wrong with it), hidden
    when served (whoever runs the server sees it with `vae-studio runs`)."""
    if not served():
        return list(records)
    owner = current_owner()
    return [record for record in records if (record.owner is None or record.owner == owner) and record.error is None]


def can_control(owner: str | None) -> bool:
    """Whether this session may stop, pause, resume, retune, rename, move or delete a run owned by
    `owner`: locally every run; served, only its owner, so shared runs are read-only in the app."""
    return not served() or (owner is not None and owner == current_owner())


def visible_job(run_id: str | None):
    """The job of this server training (or having trained) `run_id`, if this session may see it."""
    if not run_id:
        return None  # without asking for the registry, which imports the engine on a fresh server
    job = session.registry().get(run_id)
    return job if job is not None and can_see(job.owner) else None


def signed_in_or_local() -> bool:
    """Whether this session may see pages: always locally; served, once signed in."""
    return not served() or current_owner() is not None


def require_login() -> None:
    """Served: a sign-in screen, and nothing else, until the person has signed in; then their name
    and a sign-out button in the sidebar. Locally: nothing."""
    if not served():
        return
    if signed_in_or_local():
        user = st.user
        st.sidebar.caption(
            "Signed in as "
            + plain(user.get("name") or user.get("email") or "you")
            + ". Your runs and uploads are yours alone; shared runs are read-only."
        )
        st.sidebar.button("Sign out", icon=":material/logout:", on_click=st.logout, key="sign_out")
        return
    st.title("VAE Studio")
    if st.user.get("is_logged_in"):
        st.error(
            "Your identity provider did not say who you are (no subject or email): ask whoever runs "
            "this server to check its login settings."
        )
    else:
        st.write("This server is shared: sign in, and the runs and uploads you make are yours alone.")
        if login_configured():
            st.button("Sign in", icon=":material/login:", type="primary", on_click=st.login, key="sign_in")
        else:
            st.error(
                f"{MULTI_USER_ENV} is set, but no login is configured: add an [auth] section to "
                ".streamlit/secrets.toml (see the README's Security section)."
            )
    st.stop()
