"""vae_core: the engine of VAE Studio. Plain PyTorch and NumPy; never imports Streamlit, ui or app_pages.

Its modules stand on floors. An import points down, to a lower floor or along its own, never up,
and no modules import each other in a circle (at the top of a file or inside a function alike).
Above them all stands the app: app_pages -> ui -> vae_core. From the bottom (names without
`vae_core.`; `data` is the package with its modules; `__init__` is this file, which imports nothing):

  1 config, errors, safe files: __init__ config errors safe_files atomic_files user_cache run_ids
                                device json_lines byte_cache slurm_settings speed own_threads
                                file_lock
  2 models, losses, data:       model_base mlp_models conv_model vqvae models losses metrics data
                                history projection latent_track latent_trajectory active_units
  3 loop, trainer:              loop trainer distributed generate threads
  4 checkpoint, run store:      checkpoint checkpoint_fields safetensors_io optimizer_state runs
                                run_index run_status run_commands latest_worker executor_state snapshot
  5 worker, executors, queue:   jobs worker executors registry run_queue run_process channel stored_runs
                                slurm_executor
  6 sweep, experiments:         train_command sweep experiments
  7 cli:                        cli experiment_cli __main__

So a model knows nothing of loops or files; the loop is handed a distributed strategy
(trainer.ShardStrategy) rather than importing one; the run store knows nothing of who trains a run;
and `sweep` builds on the `train` command's flags (train_command.py), never on the CLI.

tests/unit/test_layering.py checks it from the source: no circles among vae_core, ui, app_pages,
app.py and router.py; nothing here imports Streamlit, ui or app_pages; every module named above
exists, every module of vae_core is named (a new one goes here, on its floor), and no import between
named modules goes up a floor.
"""

__version__ = "0.1.0"
