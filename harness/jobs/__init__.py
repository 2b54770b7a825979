"""Per-job runners called by the Snakemake rules (one Python process per job).

Each runner takes one `--job` JSON argument (built by the Snakefile from the validated
config), does its work, and writes its output atomically.
"""
