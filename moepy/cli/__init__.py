"""The command-line programs behind `python -m moepy` (demo, configs, eval, simulate)."""
