"""The nondeterminism finder: repeats, seeded reruns, causes and proposals."""
