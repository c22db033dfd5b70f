"""Many experiments: suites (named lists of presets with seeds), sweeps (grids and random
searches), and the executor that runs them here or on Dask.

    suite.py           suites, resumed where they stopped
    sweep.py           sweep files -> validated points -> runs
    sweep_manifest.py  a sweep's own record beside its runs
    sweep_results.py   a sweep's rows read back
    sweep_table.py     results table and plots
    executor.py        `run_jobs`: skip complete runs, run the rest in-process or on Dask
    cluster.py         a local Dask cluster or an existing scheduler
    remote.py          the worker's task, and its files received into the runs folder
"""
