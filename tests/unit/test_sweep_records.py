"""A sweep's record (vae_core/sweep.py): the count the form shows, the record kept in the run folder
and read back checked, the table's order (newest first, a sweep's runs in its order), and the
summary of a sweep's results."""

import json

import pytest

from vae_core.config import TrainConfig
from vae_core.errors import ConfigError
from vae_core.safe_files import UnreadableFile
from vae_core.sweep import (
    SWEEPS_FOLDER,
    SweepRecord,
    SweptRun,
    list_sweeps,
    new_sweep_record,
    newest_first,
    read_sweep,
    run_count_text,
    runs_word,
    save_sweep,
    sweep_axes,
    sweep_configs,
    sweep_path,
    sweep_summary,
)


def test_the_count_is_said_as_it_is_computed():
    assert run_count_text([3, 2]) == "3 × 2 = 6 runs"
    assert run_count_text([3]) == "3 runs"
    assert run_count_text([1]) == "1 run"
    assert run_count_text([1, 1]) == "1 × 1 = 1 run"
    assert runs_word(1) == "1 run" and runs_word(0) == "0 runs" and runs_word(1200) == "1,200 runs"


def test_a_field_chosen_twice_is_refused_rather_than_overwritten():
    assert sweep_axes([("beta", "1 4"), ("latent_dim", "2")]) == {"beta": "1 4", "latent_dim": "2"}
    with pytest.raises(ConfigError, match="two different hyperparameters"):
        sweep_axes([("beta", "1 4"), ("beta", "2")])


def test_a_sweep_is_kept_and_read_back_in_its_order(tmp_path):
    configs = sweep_configs(TrainConfig(), {"beta": "0.5 4", "model": "mlp conv"})
    run_ids = [f"20261207-100000-00000{i}" for i in range(4)]
    sweep = new_sweep_record(configs, ["beta", "model"], run_ids, owner=None)
    path = save_sweep(tmp_path, sweep)
    assert path == tmp_path / SWEEPS_FOLDER / f"{sweep.sweep_id}.json"
    read = read_sweep(path)
    assert read == sweep
    assert [run.values for run in read.runs] == [
        {"beta": 0.5, "model": "mlp"},
        {"beta": 0.5, "model": "conv"},
        {"beta": 4.0, "model": "mlp"},
        {"beta": 4.0, "model": "conv"},
    ]
    assert read.values_of("model") == ["mlp", "conv"]
    assert read.label() == "beta 0.5, 4 × model mlp, conv · 4 runs"
    assert list_sweeps(tmp_path) == [sweep]


def test_sweeps_are_listed_newest_first_and_unreadable_records_passed_over(tmp_path):
    older = SweepRecord("20261207-090000-aaaaaa", ("beta",), (SweptRun("r1", {"beta": 1.0}),), 100.0)
    newer = SweepRecord("20261207-100000-bbbbbb", ("beta",), (SweptRun("r2", {"beta": 2.0}),), 200.0)
    save_sweep(tmp_path, older)
    save_sweep(tmp_path, newer)
    (tmp_path / SWEEPS_FOLDER / "broken.json").write_text("{not json")
    assert list_sweeps(tmp_path) == [newer, older]
    assert list_sweeps(tmp_path / "nowhere") == []


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"format": "other"}, "is not a vae-studio-sweep record"),
        ({"sweep_id": "20261207-090000-cccccc"}, "its sweep_id is not the file's own"),
        ({"fields": ["beta", "beta"]}, "its fields are not a list of distinct config fields"),
        ({"fields": ["__class__"]}, "its fields are not a list of distinct config fields"),
        ({"runs": []}, "its runs are not a list of runs"),
        ({"runs": [{"run_id": "../etc", "values": {"beta": 1.0}}]}, "a run of it has no valid run id"),
        ({"runs": [{"run_id": "r1", "values": {"beta": True}}]}, "run r1 has no value"),
        ({"runs": [{"run_id": "r1", "values": {"lr": 1.0}}]}, "run r1 has no value"),
        ({"created": "yesterday"}, "its created time is not a number"),
        ({"created": 1e308}, "its created time must be a time no later than now"),
        ({"owner": "not an owner!"}, "its owner is not an owner id"),
    ],
)
def test_a_record_someone_else_wrote_is_checked_field_by_field(tmp_path, change, problem):
    sweep = SweepRecord("20261207-090000-aaaaaa", ("beta",), (SweptRun("r1", {"beta": 1.0}),), 100.0)
    path = save_sweep(tmp_path, sweep)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(UnreadableFile, match=problem):
        read_sweep(path)


def test_a_sweep_id_names_no_other_file(tmp_path):
    with pytest.raises(Exception, match="is not valid"):
        sweep_path(tmp_path, "../outside")


def test_the_table_lists_newest_first_with_a_sweeps_runs_together_in_its_order():
    # Ids made in the same second sort by their random tail; the sweep queued c, a, b in that order.
    alone_before, alone_after = "20261207-090000-zzzzzz", "20261207-110000-000000"
    c, a, b = "20261207-100000-cccccc", "20261207-100000-aaaaaa", "20261207-100000-bbbbbb"
    sweep = SweepRecord(
        "20261207-100000-ssssss",
        ("beta",),
        tuple(SweptRun(run_id, {"beta": beta}) for run_id, beta in ((c, 0.5), (a, 1.0), (b, 4.0))),
        0.0,
    )
    listed = [alone_before, a, b, c, alone_after, "uploaded-by-hand"]
    assert newest_first(listed, [sweep]) == ["uploaded-by-hand", alone_after, c, a, b, alone_before]
    assert newest_first(listed, []) == ["uploaded-by-hand", alone_after, c, b, a, alone_before]
    # A run of the sweep that was deleted leaves the others in their order.
    assert newest_first([b, c], [sweep]) == [c, b]


def test_the_summary_has_each_runs_values_and_last_metrics_in_sweep_order():
    sweep = SweepRecord(
        "20261207-100000-ssssss",
        ("beta", "latent_dim"),
        (
            SweptRun("r1", {"beta": 1.0, "latent_dim": 2}),
            SweptRun("r2", {"beta": 4.0, "latent_dim": 2}),
            SweptRun("r3", {"beta": 4.0, "latent_dim": 10}),
        ),
        0.0,
    )
    runs = {
        "r1": {
            "status": "finished",
            "epoch": 3,
            "epochs": 3,
            "metrics": {"test_neg_elbo": 100.5, "test_recon": 90.25, "test_kl": 10.25},
        },
        "r2": {
            "status": "running",
            "epoch": 1,
            "epochs": 3,
            "metrics": {"test_neg_elbo": 150.0, "test_recon": 149.0, "test_kl": 1.0},
        },
        "elsewhere": {"status": "finished", "epoch": 1, "epochs": 1, "metrics": {}},
    }
    assert sweep_summary(sweep, runs) == [
        {
            "run_id": "r1",
            "beta": 1.0,
            "latent_dim": 2,
            "status": "finished",
            "epoch": 3,
            "epochs": 3,
            "test −ELBO": 100.5,
            "reconstruction": 90.25,
            "KL": 10.25,
        },
        {
            "run_id": "r2",
            "beta": 4.0,
            "latent_dim": 2,
            "status": "running",
            "epoch": 1,
            "epochs": 3,
            "test −ELBO": 150.0,
            "reconstruction": 149.0,
            "KL": 1.0,
        },
        {
            "run_id": "r3",
            "beta": 4.0,
            "latent_dim": 10,
            "status": "not found",
            "epoch": None,
            "epochs": None,
            "test −ELBO": None,
            "reconstruction": None,
            "KL": None,
        },
    ]
