"""Final export of a trained ESI model as a `model` artifact (what `esi embed` / `esi probe` read)."""

from __future__ import annotations

import polars as pl

from ..artifacts import ArtifactWriter
from ..model.factory import CONFIG_FILE, ENCODER_FILE, MODEL_FILE, TEXT_DIR

TIED = ("decoder.head.weight",)  # tied to decoder.token.weight: stored once, re-tied when the model is built


def save_weights(state: dict, path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items() if k not in TIED}, str(path))


def write_model(writer: ArtifactWriter, model, state: dict, history: list[dict]) -> None:
    """config.json, model.safetensors, encoder.safetensors, text/, train_log.parquet, train_curves.png."""
    config = model.config.to_dict()
    config["preprocess"] = "esi_tools.model.preprocess.standardise: per-lead mean removed, divided by the record's std"
    writer.write_json(CONFIG_FILE, config)
    save_weights(state, writer.path(MODEL_FILE))
    save_weights({k[len("ecg.") :]: v for k, v in state.items() if k.startswith("ecg.")}, writer.path(ENCODER_FILE))
    text_dir = writer.path(TEXT_DIR)
    model.tokenizer.save_pretrained(str(text_dir))
    model.text.model.config.save_pretrained(str(text_dir))
    log = pl.DataFrame(history)
    writer.write_table("train_log.parquet", log)
    plot_curves(log, writer.path("train_curves.png"))


def plot_curves(log: pl.DataFrame, path) -> None:
    """Losses, temperature and throughput against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    step = log["step"].to_list()
    for name in ("loss", "contrastive_loss", "caption_loss"):
        axes[0].plot(step, log[name].to_list(), label=name)
    axes[0].set(xlabel="step", ylabel="loss", title="losses")
    axes[0].legend()
    axes[1].plot(step, log["temperature"].to_list())
    axes[1].set(xlabel="step", title="temperature")
    axes[2].plot(step, log["samples_per_s"].to_list())
    axes[2].set(xlabel="step", title="samples/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
