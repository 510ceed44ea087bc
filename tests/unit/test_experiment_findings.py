"""The latest finding of each experiment is kept beside its runs and read back after a restart;
a finding whose runs are gone, or a file it could not have written, is passed over."""

import json
import os

import pytest

from vae_core import experiments
from vae_core.config import TrainConfig
from vae_core.experiments import FINDINGS_FOLDER, RunResult, finding_for, latest_findings, save_finding

AE = {"aggregate_kl": 900.0, "prior_recognised": 0.1, "real_recognised": 0.577}
VAE = {"aggregate_kl": 2.0, "prior_recognised": 0.6, "real_recognised": 0.577}


def _result(ae=AE, vae=VAE):
    config = TrainConfig()
    runs = [
        RunResult("AE", config.replace(model="ae"), dict(ae), (), None),
        RunResult("VAE", config, dict(vae), (), None),
    ]
    return finding_for("ae-vs-vae", runs)


@pytest.fixture
def folder(tmp_path):
    for run_id in ("run-ae", "run-vae"):
        (tmp_path / f"{run_id}.safetensors").write_bytes(b"a run")
    return tmp_path


def test_a_saved_finding_is_the_latest_of_its_experiment(folder):
    assert latest_findings(folder) == {}
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    saved = latest_findings(folder)["ae-vs-vae"]
    assert saved.finding == _result().finding and "aggregate KL is 900 nats" in saved.finding
    assert saved.runs == (("AE", "run-ae"), ("VAE", "run-vae")) and saved.saved
    save_finding(folder, _result(ae={**AE, "aggregate_kl": 500.0}), ["run-ae", "run-vae"])
    assert "500 nats" in latest_findings(folder)["ae-vs-vae"].finding
    assert list(latest_findings(folder)) == ["ae-vs-vae"]


def test_an_unchanged_finding_is_not_written_again(folder):
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    path = folder / FINDINGS_FOLDER / "ae-vs-vae.json"
    os.utime(path, (1, 1))
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    assert path.stat().st_mtime == 1


def test_a_finding_about_deleted_runs_is_not_shown(folder):
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    (folder / "run-vae.safetensors").unlink()
    assert latest_findings(folder) == {}


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[" * 5000 + b"]" * 5000,
        b'"text"',
        b"{}",
        json.dumps({"experiment": "beta", "finding": "x", "saved": "now", "runs": [["AE", "run-ae"]]}).encode(),
        json.dumps({"experiment": "ae-vs-vae", "finding": "x", "saved": "now", "runs": [["AE", "../run-ae"]]}).encode(),
        json.dumps(
            {"experiment": "ae-vs-vae", "finding": "x\x1b[2J", "saved": "now", "runs": [["AE", "run-ae"]]}
        ).encode(),
        json.dumps({"experiment": "ae-vs-vae", "finding": 3, "saved": "now", "runs": [["AE", "run-ae"]]}).encode(),
        json.dumps({"experiment": "ae-vs-vae", "finding": "x" * 70_000, "saved": "now", "runs": []}).encode(),
        json.dumps(
            {
                "experiment": "ae-vs-vae",
                "finding": "x",
                "saved": "now",
                "runs": [["<b>AE</b>", "run-ae"], ["VAE", "run-vae"]],
            }
        ).encode(),  # not the experiment's labels
        *(
            json.dumps(
                {
                    "experiment": "ae-vs-vae",
                    "version": experiments.FINDING_VERSION,
                    "finding": "x",
                    "saved": "now",
                    "runs": [["AE", "run-ae"], ["VAE", "run-vae"]],
                    "real_recognised": real,
                }
            ).encode()
            for real in ("58%", 1.5, -0.1, True, [0.5])
        ),  # a ceiling that is not a share
    ],
)
def test_a_file_it_could_not_have_written_is_passed_over(folder, content):
    (folder / FINDINGS_FOLDER).mkdir()
    (folder / FINDINGS_FOLDER / "ae-vs-vae.json").write_bytes(content)
    assert latest_findings(folder) == {}


def test_only_the_experiments_own_names_are_read(folder):
    (folder / FINDINGS_FOLDER).mkdir()
    record = {"experiment": "evil", "finding": "x", "saved": "now", "runs": [["AE", "run-ae"]]}
    (folder / FINDINGS_FOLDER / "evil.json").write_text(json.dumps(record))
    assert latest_findings(folder) == {} and "evil" not in experiments.EXPERIMENTS


def test_a_finding_saved_before_the_one_definition_of_active_is_passed_over(folder):
    """Its words counted "active" dimensions by the variance of their means, which contradicted the KL
    bars next to it; the runs are still there, so the experiment can write it again."""
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    path = folder / FINDINGS_FOLDER / "ae-vs-vae.json"
    record = json.loads(path.read_text())
    assert record["version"] == experiments.FINDING_VERSION
    del record["version"]
    path.write_text(json.dumps(record))
    assert latest_findings(folder) == {}
    save_finding(folder, _result(), ["run-ae", "run-vae"])  # written again, not skipped as unchanged
    assert latest_findings(folder)["ae-vs-vae"].finding == _result().finding


def test_a_finding_about_recognised_samples_keeps_the_judges_ceiling(folder):
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    record = json.loads((folder / FINDINGS_FOLDER / "ae-vs-vae.json").read_text())
    assert record["real_recognised"] == 0.577 and record["version"] == 3
    saved = latest_findings(folder)["ae-vs-vae"]
    assert saved.real_recognised == 0.577 and "and 58% of real test images" in saved.finding


def test_a_finding_saved_before_the_ceiling_is_passed_over(folder):
    """Version 2 said "the VAE's samples are not yet better" with no ceiling beside its shares."""
    save_finding(folder, _result(), ["run-ae", "run-vae"])
    path = folder / FINDINGS_FOLDER / "ae-vs-vae.json"
    record = json.loads(path.read_text())
    del record["real_recognised"]
    path.write_text(json.dumps(record | {"version": 2}))
    assert latest_findings(folder) == {}


# --- served: a finding per experiment and person -------------------------------------------------

ALICE, BOB = "a" * 32, "b" * 32


def test_each_person_keeps_their_latest_finding_beside_the_others(folder):
    for run_id in ("alice-ae", "bob-ae"):
        (folder / f"{run_id}.safetensors").write_bytes(b"a run")
    save_finding(folder, _result(), ["alice-ae", "run-vae"], owner=ALICE)
    os.utime(experiments.finding_path(folder, "ae-vs-vae", ALICE), ns=(1, 1))  # Alice's is the older
    save_finding(folder, _result(ae={**AE, "aggregate_kl": 500.0}), ["bob-ae", "run-vae"], owner=BOB)
    assert sorted(path.name for path in (folder / FINDINGS_FOLDER).iterdir()) == [
        f"ae-vs-vae.{ALICE}.json",
        f"ae-vs-vae.{BOB}.json",
    ]
    assert latest_findings(folder)["ae-vs-vae"].owner == BOB  # locally: the latest of all
    alices = latest_findings(folder, owners=(None, ALICE))["ae-vs-vae"]
    assert alices.owner == ALICE and alices.runs[0] == ("AE", "alice-ae")
    # The latest one whose runs the reader may all see: Bob's run hidden, Alice's own is next.
    assert latest_findings(folder, visible=lambda run_id: run_id != "bob-ae")["ae-vs-vae"].owner == ALICE


def test_a_finding_file_renamed_to_another_persons_name_is_not_theirs(folder):
    save_finding(folder, _result(), ["run-ae", "run-vae"], owner=BOB)
    bobs = experiments.finding_path(folder, "ae-vs-vae", BOB)
    bobs.rename(experiments.finding_path(folder, "ae-vs-vae", ALICE))
    assert latest_findings(folder) == {}
    with pytest.raises(ValueError, match="not an owner id"):
        save_finding(folder, _result(), ["run-ae", "run-vae"], owner="../../elsewhere")
