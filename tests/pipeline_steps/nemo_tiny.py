"""A small real NeMo EncDecCTCModel (Conformer encoder, char vocabulary) built from a config.

No NeMo weights exist offline; this model has random weights but goes through the same
``.nemo`` save/restore path as Parakeet/Canary checkpoints.
"""

from __future__ import annotations

from pathlib import Path

LABELS = [" ", *"abcdefghijklmnopqrstuvwxyz'"]


def build_tiny_ctc_nemo(path: Path) -> Path:
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "sample_rate": 16000,
            "labels": LABELS,
            "train_ds": None,
            "validation_ds": None,
            "test_ds": None,
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "sample_rate": 16000,
                "features": 64,
                "window_size": 0.025,
                "window_stride": 0.01,
                "n_fft": 512,
                "normalize": "per_feature",
                "dither": 0.0,
            },
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConformerEncoder",
                "feat_in": 64,
                "n_layers": 2,
                "d_model": 64,
                "n_heads": 4,
                "subsampling": "striding",
                "subsampling_factor": 4,
                "subsampling_conv_channels": 32,
                "ff_expansion_factor": 2,
                "conv_kernel_size": 9,
                "self_attention_model": "rel_pos",
            },
            "decoder": {
                "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                "feat_in": 64,
                "num_classes": len(LABELS),
                "vocabulary": LABELS,
            },
        }
    )
    model = EncDecCTCModel(cfg=cfg)
    model.save_to(str(path))
    return path
