"""Learning building blocks: networks, distributions, policy, buffers, returns, normalization."""
