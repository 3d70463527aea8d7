"""Pipeline: the run's orchestration (orchestrate.py), its RunContext and the end-of-run steps."""
