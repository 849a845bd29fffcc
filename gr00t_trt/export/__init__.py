"""ONNX export of the seven graph kinds and the export directory."""
