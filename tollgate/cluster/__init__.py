"""Everything that talks to a Kubernetes cluster: KServe rollouts, KFP runs and schedules.

Kept apart from ``tollgate.steps`` so the pure steps import no cluster clients;
``tollgate.steps.deploy`` stays the one place that decides *what* a deploy does.
"""
