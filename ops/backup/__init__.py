"""Backups, restores and drills with pgBackRest, on a local stack, one host or a swarm."""
