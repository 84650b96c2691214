"""End-to-end container benchmark: echo servers (ours and peers) under a load client."""
