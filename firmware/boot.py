# Runs first on every boot: keep it minimal. No network here, and nothing that
# can fail: a bad boot.py would stop main.py and the REPL from being useful.
import gc

gc.collect()
