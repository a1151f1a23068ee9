"""Helpers shared by the project's tests (functional tests and Molecule verify steps)."""
