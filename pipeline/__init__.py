"""Builds and runs the Fashion-MNIST TFX pipeline (DAG from a config, runners, CLI)."""
