"""VAE Studio's benchmarks: `python -m bench` runs them all and writes bench/RESULTS.md.

Every bench module exposes `run(quick: bool = False) -> list[dict]`, rows of
{figure, target, measured, ok}, and runs alone too (`python -m bench.bench_training`).
Shared pieces (the row format, the reference training loop, interleaved timing) are in
`bench.common`.
"""
