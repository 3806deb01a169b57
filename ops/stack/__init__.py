"""Operating an environment's stack: the local one on this machine's engine (local), and
the current release on a host over SSH (host).
"""
