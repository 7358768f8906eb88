"""clusterkit.sim: the SimPy driver (virtual time, lossy network, crashable disks). Coming in its own issue."""
