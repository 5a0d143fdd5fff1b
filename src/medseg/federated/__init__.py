"""Federated training across simulated sites (Flower FedAvg/FedProx, FedBN).

``split_sites`` makes the sites, ``federated_plan`` one plan from their aggregates,
``run_federated`` trains with Flower's Simulation runtime (``flwr`` imported only there),
``fedavg`` is the aggregation maths; ``deploy.run_deployed`` runs the same apps on a
SuperLink (Flower's deployment runtime) and ``privacy`` holds client-side DP (clipping,
Gaussian noise, an RDP accountant). See ``docs/federated.md``.
"""

from medseg.federated.aggregate import FederatedError, fedavg, norm_keys, proximal_term
from medseg.federated.sites import SiteShift, check_sites, split_sites

__all__ = [
    "FederatedError",
    "SiteShift",
    "check_sites",
    "fedavg",
    "norm_keys",
    "proximal_term",
    "split_sites",
]
