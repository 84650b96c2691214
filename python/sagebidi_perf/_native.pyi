# Stubs for the private native module, checked by `mypy.stubtest` (make lint).
# Each section belongs to one Rust binding module in rust/src/python/.
from collections.abc import Buffer

__version__: str

# --- eventstream ---

# --- sigv4 ---

# --- chunker ---

# --- audio ---

# --- keepalive ---
