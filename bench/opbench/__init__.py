"""The pieces of `make bench-operator` (bench/bench_operator.py is the entry point).

Role: ``common`` (clock, /proc, the local cluster with raised client limits, the apiserver's
counters), ``rawwatch`` (list-then-watch as plain dicts, no generated models), ``tracker`` (when
each LabServer was first observed and first Ready, from a watch), ``floor`` (the plain client
that makes only the writes a perfect operator must make), ``operatorrun`` (the operator as users
run it, from this checkout or another), ``phases`` (scale rounds, restart, memory, profile) and
``report`` (markdown on stdout, JSON under bench/results/).
"""
