"""The suite definitions (one YAML file per suite), installed as the package qbench.suites.definitions."""
