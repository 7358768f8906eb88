"""Where data goes: key -> partition hashing (Go compatible) and the balancing partition assigner."""
