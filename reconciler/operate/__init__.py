"""Between deploys: diagnose, drift, status, metrics, notifications and run logs.

The split follows pyinfra's facts vs operations: ``collect`` gathers facts from the engine
and the host (the only I/O), ``rules`` are pure functions from facts to issues, and the
commands only wire the two together and print. Recorded facts (``diagnose --save-facts``)
replay through the same rules in unit tests.
"""
