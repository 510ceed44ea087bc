"""A checkpoint's clock (history.clock: [step, seconds] pairs that charts map steps through) comes
from a file anyone may have written: each way of getting it wrong is refused by name, before a
page plots it; a file from before clocks were kept still loads."""

import pytest

from vae_core.checkpoint import load_checkpoint
from vae_core.errors import CheckpointError
from vae_core.history import MAX_CLOCK_POINTS


def clock(value):
    return lambda metadata: metadata["history"].update(clock=value)


CASES = {  # the good checkpoint has trained one step
    "not a list": (clock({"0": 0}), "history.clock is an object, not a list"),
    "too many points": (
        clock([[0, 0.0]] * (MAX_CLOCK_POINTS + 1)),
        f"history.clock has {MAX_CLOCK_POINTS + 1} entries, more than the limit of {MAX_CLOCK_POINTS}",
    ),
    "a point that is no pair": (clock([[0, 0.0, 1]]), "history.clock[0] must be a [step, seconds] pair"),
    "a point as text": (clock(["0 0.0"]), "history.clock[0] must be a [step, seconds] pair, not '0 0.0'"),
    "a step as text": (clock([["0", 0.0]]), "history.clock[0] step must be a whole number between 0 and 1"),
    "a fractional step": (clock([[0.5, 0.0]]), "history.clock[0] step must be a whole number"),
    "a step past the file's": (
        clock([[0, 0.0], [7, 1.0]]),
        "history.clock[1] step must be a whole number between 0 and 1, not 7",
    ),
    "seconds as text": (clock([[0, "soon"]]), "history.clock[0] seconds is text, not a number"),
    "seconds as true": (clock([[0, True]]), "history.clock[0] seconds is true/false, not a number"),
    "negative seconds": (clock([[0, -1.0]]), "history.clock[0] seconds must be a finite number of at least 0"),
    "infinite seconds": (clock([[0, 1e400]]), "history.clock[0] seconds must be a finite number of at least 0"),
    "a step going back": (clock([[1, 0.0], [0, 1.0]]), "history.clock[1] goes back in time"),
    "a step twice": (clock([[1, 0.0], [1, 1.0]]), "history.clock[1] goes back in time"),
    "seconds going back": (clock([[0, 2.0], [1, 1.0]]), "history.clock[1] goes back in time"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_clock_that_is_not_one_is_refused_by_name(craft, case):
    change, message = CASES[case]
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(craft("bad", metadata_change=change))
    assert str(error.value).startswith("bad.safetensors: ") and message in str(error.value)


def test_a_file_from_before_clocks_were_kept_loads_without_one(craft):
    history = load_checkpoint(craft("old", metadata_change=lambda m: m["history"].pop("clock"))).state.history
    assert history.clock == [] and history.curves().clock is None


def test_the_good_checkpoint_has_its_clock(good_checkpoint):
    history = load_checkpoint(good_checkpoint).state.history
    assert [step for step, _ in history.clock] == [0, 1] and history.curves().clock is not None
