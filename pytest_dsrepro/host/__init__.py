"""Only in the host's pytest: the session, the replay of worker events, sharing, images."""
