"""Everything that needs torch. Imported only inside job subprocesses (trainer/run.py)."""
