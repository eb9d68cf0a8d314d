"""Fit and ONNX conversion, evaluation and gate, the pipeline's Train/Evaluate/Register steps and the training
engines (Lambda, SageMaker training jobs)."""
