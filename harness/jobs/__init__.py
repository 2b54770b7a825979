"""Per-job runners called by the Snakemake rules (one Python process per job).

Each runner takes one `--job` JSON argument, built by the workflow from the validated
config, and reads it into its typed spec (a `harness.jobs.spec.JobSpec`: MethodJob in
spec.py, TuneJob, SequentialJob, TieJob, FinetuneJob, FetchTofuJob in their runners), which
names any unknown or missing field (exit status 2) before work starts. Every field is
passed: defaults are stated once, in workflows/config/schema.json. Each runner writes its
output atomically.
"""
