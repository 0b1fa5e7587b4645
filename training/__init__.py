"""The domain-free trainer core: models, rollouts, Prefix-Grouper, losses, trainers, checkpoints, export."""
