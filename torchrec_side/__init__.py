"""torchrec-side: Semantic-ID features for TorchRec."""

__version__ = "0.1.0"
