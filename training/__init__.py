"""Training: configs, loops, checkpoints and registration (uses models/ and datasets/, never serving/)."""
