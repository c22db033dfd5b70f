"""Trained runs as files other tools run: ONNX (onnxruntime, any language) and TorchScript.

`export_run(run, "onnx")` writes the run's stock network with a softmax output, states in the
file what input it takes (`contract`), and keeps the file only after it reproduced mnistlab's
own predictions on real test images.
"""

from mnistlab.export.write import FORMATS, Exported, export_run

__all__ = ["FORMATS", "Exported", "export_run"]
