"""ONNX: export of change models, the exported graph, its metadata, and the ONNX Runtime predictor."""
