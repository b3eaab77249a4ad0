"""The paper's networks and the baselines they are compared with."""
