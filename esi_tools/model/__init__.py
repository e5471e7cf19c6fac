"""The ESI model: 1D ConvNeXt-V2 ECG encoder x Hugging Face text encoder, contrastive + captioning.

Heavy (imports torch): only commands that train or embed import this package.
"""

from .factory import create_ecg_encoder, create_model, load_ecg_encoder, load_esi
from .preprocess import preprocess, standardise

__all__ = ["create_ecg_encoder", "create_model", "load_ecg_encoder", "load_esi", "preprocess", "standardise"]
