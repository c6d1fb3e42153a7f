"""Beyond the course: a trained scorer as ONNX graphs (``scorelib-export``), scored by onnxruntime without PyTorch
(``scorelib.load`` of the export folder)."""
