"""Accuracy suites through lmms-eval: `qbench run` (runner.py), the lmms-eval model (lmms_model.py), suites as
data (registry.py, suites/*.yaml), the papers' scoring variants (variants.py) and the generated mini-suites
(`qbench data mini`: scenes.py, questions.py, mini.py).

Nothing is imported here: `import qbench` and the CLI stay light, and lmms-eval (which loads this package's
model through its entry point while it is itself being imported) finds no import cycle.
"""
