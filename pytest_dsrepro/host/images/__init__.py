"""The project's image: content hash, build, registry, rebuild check."""
