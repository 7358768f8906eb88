"""ClusterKit: cluster coordination (Raft, partitions, rebalancing) on a deterministic sans-IO core."""

__version__ = "0.1.0"
