"""Evaluation: task data and perturbations for evals/tasks, and the code sandbox."""
