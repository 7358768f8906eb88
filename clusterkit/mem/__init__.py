"""The in-memory drivers: a deterministic network of Raft nodes and a cluster of ClusterKit facades over it."""
