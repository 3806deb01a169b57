"""Slipway's deploy toolkit: configuration, secrets, images, certificates, compose, health."""
