"""Disposable deploy hosts on this machine (`invoke sandbox.up`): containers with sshd and
their own Docker engine, and the ACME CA, registry and S3 servers they use.
"""
