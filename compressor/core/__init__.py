"""Core: errors, registries, run-folder writing, locks, console and progress. Imports nothing else from compressor."""
