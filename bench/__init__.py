"""`make bench`: admission and billing throughput on the real stack, beside their raw SQL floors.

A benchmark, not a test: it prints figures and targets and never asserts. It works in a database of
its own (the configured database's name + "_bench"), created at the start and dropped at the end.
"""
