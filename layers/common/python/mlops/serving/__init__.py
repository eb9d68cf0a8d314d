"""Scoring: the ONNX model, the scoring API, data capture, decision records, explanations read from the ONNX
graph, the per-family OpenAPI and the audit of one request."""
