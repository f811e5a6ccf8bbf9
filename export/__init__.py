"""torch -> ONNX conversion of the student embedder, with a parity check (installed as fastattr.export)."""
