"""qbench: benchmark and evaluation harness for multimodal LLMs on state-space (Mamba) backbones."""

__version__ = "0.1.0"


def load_model(name: str, **kwargs):
    """Build a preset (or load a checkpoint) as a ready-to-use VLM; see `qbench.checkpoints.load_vlm`."""
    from qbench.checkpoints import load_vlm

    return load_vlm(name, **kwargs)
