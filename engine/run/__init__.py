"""Runs: the scheduler, the driver loop of one run, and the engine that starts, resumes and cancels them."""
