"""A run's owner (the served mode's who-may-see-it): stored in its checkpoint, validated when read,
kept by every later save, and never taken from an imported file: an import is its importer's."""

import pytest

from vae_core.checkpoint import checkpoint_bytes, import_checkpoint, load_checkpoint, save_trainer_checkpoint
from vae_core.checkpoint_fields import OWNER_ID_LENGTH
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, TrainingError
from vae_core.loop import run_to_end
from vae_core.registry import JobRegistry
from vae_core.runs import list_runs, relabel_run
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer

ALICE = "a" * OWNER_ID_LENGTH
BOB = "0123456789abcdef" * (OWNER_ID_LENGTH // 16)
TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=256, epochs=1, device="cpu")


@pytest.fixture(scope="module")
def trainer(digits):
    trained = Trainer(TrainConfig(**TINY), digits)
    run_to_end(trained)
    return trained


def _with_metadata(source, target, **changes):
    """A copy of checkpoint `source` whose JSON metadata has `changes` (a forged file)."""
    tensors, metadata = read_checkpoint(source)
    write_checkpoint(target, tensors, {**metadata, **changes})
    return target


def test_an_owned_run_keeps_its_owner_through_saves_listing_and_relabelling(trainer, tmp_path):
    path = save_trainer_checkpoint(trainer, "alices", "finished", tmp_path / "alices.safetensors", owner=ALICE)
    assert load_checkpoint(path).owner == ALICE
    assert [record.owner for record in list_runs(tmp_path)] == [ALICE]
    relabel_run(tmp_path, "alices", name="renamed")
    assert load_checkpoint(path).owner == ALICE and load_checkpoint(path).name == "renamed"
    assert load_checkpoint(checkpoint_bytes(load_checkpoint(path))).owner == ALICE  # a download keeps it too


def test_a_run_without_owner_is_shared(trainer, tmp_path):
    path = save_trainer_checkpoint(trainer, "cli-run", "finished", tmp_path / "cli-run.safetensors")
    assert load_checkpoint(path).owner is None
    assert "owner" not in read_checkpoint(path)[1]
    assert list_runs(tmp_path)[0].owner is None


def test_an_import_belongs_to_its_importer_whatever_owner_the_file_names(trainer, tmp_path):
    forged = save_trainer_checkpoint(trainer, "forged", "finished", tmp_path / "forged.safetensors", owner=ALICE)
    server = tmp_path / "server"
    by_bob = import_checkpoint(forged, server, owner=BOB)
    assert by_bob.owner == BOB and load_checkpoint(by_bob.path).owner == BOB
    shared = import_checkpoint(forged, server)  # the local app imports for everyone
    assert shared.owner is None and "owner" not in read_checkpoint(shared.path)[1]
    assert {record.owner for record in list_runs(server)} == {BOB, None}


@pytest.mark.parametrize("owner", ["../../etc", "A" * OWNER_ID_LENGTH, "a" * (OWNER_ID_LENGTH + 1), 42, ""])
def test_an_owner_that_is_not_an_owner_id_is_refused_naming_the_field(trainer, tmp_path, owner):
    good = save_trainer_checkpoint(trainer, "good", "finished", tmp_path / "good.safetensors")
    bad = _with_metadata(good, tmp_path / "bad.safetensors", owner=owner)
    with pytest.raises(CheckpointError, match="bad.safetensors: owner .* is not an owner id"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="owner"):
        import_checkpoint(bad, tmp_path / "server", owner=BOB)
    with pytest.raises(CheckpointError, match="is not an owner id"):
        save_trainer_checkpoint(trainer, "never", "finished", tmp_path / "never.safetensors", owner=owner)
    assert not (tmp_path / "never.safetensors").exists()


def test_a_job_keeps_its_owner_in_every_checkpoint_and_refuses_a_bad_one(digits, tmp_path):
    registry = JobRegistry(tmp_path)
    job = registry.submit(TrainConfig(**TINY), digits, owner=BOB)
    assert job.wait(60) and job.status == "finished"
    assert job.owner == BOB and load_checkpoint(job.checkpoint_path).owner == BOB
    with pytest.raises(TrainingError, match="owner"):
        registry.submit(TrainConfig(**TINY), digits, owner="bob@example.com")


def test_an_owner_id_is_a_stable_hash_of_issuer_and_subject():
    from ui.identity import owner_of_identity

    alice = owner_of_identity("https://id.example", "alice")
    assert alice == owner_of_identity("https://id.example", "alice")
    assert len(alice) == OWNER_ID_LENGTH and int(alice, 16) >= 0
    assert alice != owner_of_identity("https://other.example", "alice")  # same subject, another provider
    assert "alice" not in alice
