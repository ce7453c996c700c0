"""Local stand-ins for outside services the tests cannot reach (they speak the real protocols over real sockets)."""
