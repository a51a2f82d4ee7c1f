"""moepy.sim: expert-placement simulation (placement, dispatch traffic, rebalancing, synthetic routing)."""
