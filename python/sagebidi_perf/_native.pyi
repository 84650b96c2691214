# Stubs for the private native module, checked by `mypy.stubtest` (make lint).
# Each section belongs to one Rust binding module in rust/src/python/.
from typing_extensions import Buffer  # collections.abc.Buffer needs Python 3.12

__version__: str

# --- eventstream ---

# --- sigv4 ---

# --- chunker ---

# --- audio ---

# --- keepalive ---
