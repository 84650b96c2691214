"""Peers: the best simple implementation of each kernel's job, run beside ours in one process."""
