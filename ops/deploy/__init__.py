"""Deploys to hosts over SSH: one host with Compose, several with Docker Swarm; rollbacks,
the deploy lock, release records, shipping images.
"""
