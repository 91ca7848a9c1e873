"""The engine benchmark harness behind bench/run.py: service graphs and start-log analysis
(topology), outside observation and cleanup (procs), the supervisors under test (supervisors),
the workloads (workloads) and the BENCHMARKS.md section (report)."""
