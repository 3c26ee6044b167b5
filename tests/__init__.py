"""The test suite as a package, so ``tests.*`` imports never resolve to a site-packages ``tests``
(stop_sequencer ships one)."""
