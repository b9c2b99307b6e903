"""stackwatch: streaming continuous emissions monitoring (CEMS) for industrial stacks.

The package `stackwatch` is the pure domain core (HJ 212 codec, conversions, HJ 75
averaging, limit catalogue, compliance and alert rules) plus settings. It imports nothing
else of ours (the CLI is `commands/`, the embedded servers `embedded/`) and never faust,
aiokafka or psycopg: those live in `streams/` and `sinks/`.
"""

__version__ = "0.1.0"
