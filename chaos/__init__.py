"""The chaos suite: a mixed workload on the rig, faults injected on a seeded schedule, and
invariants checked afterwards from an independent observer's records and PostgreSQL.

    python -m chaos.run --profile quick|full [--seed N]

See chaos/README.md for the faults, how each is injected here, and what each must leave intact.
"""
