"""Planning: fingerprint -> Plans (spacing, normalisation, patch, batch, topology)."""

from medseg.planning.memory import estimate_training_bytes
from medseg.planning.plan import CONFIGURATIONS, Plan, Plans
from medseg.planning.planner import plan_configuration, plan_dataset
from medseg.planning.topology import Topology, plan_topology

__all__ = [
    "CONFIGURATIONS",
    "Plan",
    "Plans",
    "Topology",
    "estimate_training_bytes",
    "plan_configuration",
    "plan_dataset",
    "plan_topology",
]
