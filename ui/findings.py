"""The experiments' latest saved findings that this session may see."""

from __future__ import annotations

from vae_core import experiments
from vae_core.metrics import RECOGNISED_PROBABILITY
from vae_core.runs import read_run

from . import access, session


def visible_findings() -> dict[str, experiments.SavedFinding]:
    """Each experiment's latest finding this session may see. Locally, the latest saved. Served to
    several people, the latest among this person's own and the shared ones whose runs this session
    may all see: a finding about another person's runs says something about their data, so it is
    theirs alone (ui/access.py), and someone else's later finding hides nobody's own."""
    if not access.served():
        return experiments.latest_findings(session.CHECKPOINT_DIR)

    def visible(run_id: str) -> bool:
        record = read_run(session.CHECKPOINT_DIR, run_id)
        return record is not None and access.can_see(record.owner)

    owners = (None, access.current_owner())
    return experiments.latest_findings(session.CHECKPOINT_DIR, owners=owners, visible=visible)


def judge_note(real_recognised: float) -> str:
    """What "recognised" means, and the judge's ceiling to read a share of recognised samples against."""
    return (
        f"Recognised: a logistic regression fitted on the dataset's training images gives the picture one "
        f"class with probability ≥ {RECOGNISED_PROBABILITY:g}. It recognises {real_recognised:.0%} of the "
        f"dataset's real test images: that is the ceiling, not 100%. A strict bar, so that noise is never "
        f"taken for a digit; a blurred but readable sample often falls short of it."
    )
