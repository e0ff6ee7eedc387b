"""Only inside the image: the launcher, the event stream, the keeper, SLURM steps."""
