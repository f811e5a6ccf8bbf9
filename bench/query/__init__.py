"""Benchmarks of the query path (issue 7): SDK latency and breakdown, real size, reference, student vs teacher."""
