"""Put on PYTHONPATH, this makes an interpreter behave as if torch were not installed (``import torch``
raises ModuleNotFoundError, ``importlib.util.find_spec("torch")`` is None): the runtime extra has no
torch (setup.cfg), and test/model/test_without_torch.py runs the ONNX path that way."""
import sys

sys.modules["torch"] = None
