"""Whether the app is served to several people, and the owner id of whoever signed in.

Served: on when Streamlit's login is configured (an `[auth]` section in .streamlit/secrets.toml) or
VAE_STUDIO_MULTI_USER=1 (a host that provides `st.user` itself); access.py says what that means for
who may see and drive which run. An owner id is a hash of the identity the provider vouches for
(issuer and subject), never the identity itself: checkpoints name no person, and the id is safe as
a folder name.
"""

from __future__ import annotations

import hashlib
import os

import streamlit as st

MULTI_USER_ENV = "VAE_STUDIO_MULTI_USER"


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class ServedModeError(Exception):
    """The served mode's settings cannot be read: the app serves no page until they are fixed."""


def multi_user_switch() -> bool:
    """VAE_STUDIO_MULTI_USER as a yes or a no; any other value is refused, never taken for "no"."""
    value = os.environ.get(MULTI_USER_ENV, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ServedModeError(
        f"{MULTI_USER_ENV} is {os.environ[MULTI_USER_ENV]!r}: set it to 1 (served to several "
        "people) or 0 (one person's), or leave it unset"
    )


def served() -> bool:
    """Whether the app is served to several people (see the module's docstring). ServedModeError
    when its settings cannot be read: a typo must not start the app as one person's (fail closed)."""
    return multi_user_switch() or login_configured()


def _secrets_files() -> list[str]:
    return [path for path in st.get_option("secrets.files") if os.path.exists(path)]


def login_configured() -> bool:
    """Whether Streamlit's login is configured (an [auth] section in the secrets)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError as error:  # no secrets file at all, or one that cannot be parsed
        broken = _secrets_files()
        if broken:
            raise ServedModeError(
                f"{', '.join(broken)} cannot be read ({error}): fix it, or remove it to run the app as one person's"
            ) from None
        return False


def owner_of_identity(issuer: str, subject: str) -> str:
    """The owner id of one identity: the same person at the same provider always gets the same id,
    and the same subject at two providers two different ids."""
    from vae_core.checkpoint_fields import OWNER_ID_LENGTH

    digest = hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()
    return digest[:OWNER_ID_LENGTH]


def _identity() -> tuple[str, str] | None:
    """(issuer, subject) of the signed-in person, None when nobody is. OIDC's `sub` is the stable id;
    a provider that sends none is keyed by the email it vouches for."""
    user = st.user
    if not user.get("is_logged_in"):
        return None
    subject = user.get("sub") or user.get("email")
    if not subject:
        return None
    return str(user.get("iss") or ""), str(subject)


def current_owner() -> str | None:
    """The owner id of whoever uses this session when served; None locally (runs are everyone's)
    or when nobody has signed in."""
    if not served():
        return None
    identity = _identity()
    return owner_of_identity(*identity) if identity else None
