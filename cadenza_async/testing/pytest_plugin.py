"""pytest plugin: the ``cadenza_sim`` fixture (a running simulator)."""
