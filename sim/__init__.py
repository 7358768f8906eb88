"""clusterkit.sim: the SimPy driver (virtual time, lossy network, crashable disks); see docs/simulator.md."""
