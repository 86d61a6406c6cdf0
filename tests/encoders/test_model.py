"""The multi-scale ECG-language model: config, towers, outputs, masks, gradients, and learning on real data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.layers import ModelInputError, count_parameters
from ecglang.encoders.modeling import EcgLangModel, EcgLangOutput
from ecglang.encoders.registry import create_model, list_models, load_model_config
from ecglang.encoders.text_encoder import sentence_spans
from ecglang.errors import ConfigError
from ecglang.record.leads import parse_lead_subset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

LEAD_SUBSETS = {
    1: "I",
    3: "I,II,V2",
    6: "I,II,III,aVR,aVL,aVF",
    12: "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6",
}
REPORTS = [
    "sinus rhythm. normal ecg.",
    "atrial fibrillation with rapid ventricular response; left axis deviation.",
    "sinus bradycardia. incomplete right bundle branch block",
    "",  # an empty report must not break anything
]


def synthetic_batch(b: int = 4, n: int = 40, beats_per_ecg: tuple[int, ...] = (10, 12, 25, 3), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor(beats_per_ecg[:b])
    return {
        "beats": torch.randn(b, n, 12, 96, generator=g),
        "beat_mask": torch.arange(n)[None, :] < counts[:, None],
        "lead_mask": torch.ones(b, 12, dtype=torch.bool),
        "rr": 0.6 + 0.4 * torch.rand(b, n, 2, generator=g),
        "times": torch.linspace(0.2, 9.8, n).expand(b, n).clone(),
        "signal": torch.randn(b, 12, 5000, generator=g),
    }


@pytest.fixture(scope="module")
def small() -> EcgLangModel:
    torch.manual_seed(0)
    return create_model("ecglang-small").eval()


@pytest.fixture(scope="module")
def resnet() -> EcgLangModel:
    torch.manual_seed(0)
    return create_model("merl-resnet18").eval()


# ------------------------------------------------------------------------------------------ config
def test_bundled_configs_and_overrides() -> None:
    assert {"ecglang-small", "ecglang-base", "merl-resnet18"} <= set(list_models())
    cfg = load_model_config("ecglang-small", ecg_tower={"d_model": 64}, loss={"weights": {"token": 0.0}})
    assert cfg.ecg_tower["d_model"] == 64 and cfg.ecg_tower["n_layers"] == 4  # merged, not replaced
    assert cfg.active_losses == ["rhythm", "beat"]
    assert load_model_config("merl-resnet18").active_losses == ["rhythm"]
    with pytest.raises(ConfigError, match="unknown model"):
        load_model_config("no-such-model")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ecg_tower": {"d_modle": 64}}, "unknown key"),
        ({"ecg_tower": {"d_model": 100, "n_heads": 8}}, "divisible"),
        ({"ecg_tower": {"type": "lstm"}}, "ecg_tower.type"),
        ({"ecg_tower": {"rhythm_attention": "global"}}, "rhythm_attention"),
        ({"ecg_tower": {"beat_len": 128}}, "processor.beats.beat_len"),
        ({"ecg_tower": {"max_beats": 20}}, "max_beats"),
        ({"processor": {"beats": {"beat_len": 1}}}, "beat_len"),
        ({"text_tower": {"finetune": "partial"}}, "finetune"),
        ({"loss": {"weights": {"rhythm": 0, "beat": 0, "token": 0}}}, "all zero"),
        ({"loss": {"weights": {"rhythm": -1.0}}}, "rhythm"),
        ({"processor": {"preprocess": {"bandpass": [40, 0.5]}}}, "bandpass"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EcgLangConfig(**kwargs)


def test_config_json_round_trip(tmp_path) -> None:
    cfg = load_model_config("ecglang-base")
    cfg.save_pretrained(tmp_path)
    back = EcgLangConfig.from_pretrained(tmp_path)
    for section in ("ecg_tower", "text_tower", "projection", "loss", "processor"):
        assert getattr(back, section) == getattr(cfg, section)


def test_small_config_is_small_and_base_is_bigger(small: EcgLangModel) -> None:
    n_small = count_parameters(small.ecg_tower)
    base_cfg = load_model_config("ecglang-base").ecg_tower
    from ecglang.encoders.ecg_encoders import BeatEcgEncoder

    n_base = count_parameters(BeatEcgEncoder(base_cfg))
    assert 0.5e6 < n_small < 2.5e6  # fits a < 10 MB safetensors file with its heads
    assert n_base > 4 * n_small


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("n_leads", [1, 3, 6, 12])
def test_output_shapes_with_lead_subsets(small: EcgLangModel, n_leads: int) -> None:
    batch = synthetic_batch()
    mask = torch.from_numpy(parse_lead_subset(LEAD_SUBSETS[n_leads]))
    batch["lead_mask"] = mask.expand(4, 12).clone()
    with torch.no_grad():
        out = small(**batch, texts=REPORTS)
    assert isinstance(out, EcgLangOutput)
    ecg, text = out.ecg_outputs, out.text_outputs
    assert ecg.rhythm_embeds.shape == (4, 256)
    assert ecg.beat_embeds.shape == (4, 40, 256)
    assert ecg.token_embeds.shape == (4, 40, 12, 256)
    assert ecg.beat_mask.shape == (4, 40) and ecg.lead_mask.shape == (4, 12)
    assert ecg.rhythm_features.shape == (4, 128)
    t = text.token_embeds.shape[1]
    assert text.text_embeds.shape == (4, 256) and text.text_features.shape == (4, 384)
    assert text.token_embeds.shape == (4, t, 256) and text.token_mask.shape == (4, t)
    s = text.sentence_embeds.shape[1]
    assert s == 2 and text.sentence_embeds.shape == (4, s, 256) and text.sentence_mask.shape == (4, s)
    assert out.logits_per_ecg.shape == (4, 4) and torch.equal(out.logits_per_text, out.logits_per_ecg.T)
    assert set(out.losses) == {"rhythm", "beat", "token"} and torch.isfinite(out.loss)
    # embeddings are unit vectors; masked positions (padded beats, absent leads) are exactly zero
    assert torch.allclose(ecg.rhythm_embeds.norm(dim=-1), torch.ones(4), atol=1e-5)
    token_norm = ecg.token_embeds.norm(dim=-1)
    keep = batch["beat_mask"][:, :, None] & batch["lead_mask"][:, None, :]
    assert torch.allclose(token_norm[keep], torch.ones(int(keep.sum())), atol=1e-5)
    assert (token_norm[~keep] == 0).all()
    assert (ecg.beat_embeds.norm(dim=-1)[~batch["beat_mask"]] == 0).all()
    # the empty report has no sentence and no real token
    assert not text.sentence_mask[3].any() and not text.token_mask[3].any()


@pytest.fixture(scope="module")
def per_lead() -> EcgLangModel:
    """The other rhythm-attention mode (per lead, as in ecglang-base), at a tiny width to stay fast."""
    torch.manual_seed(0)
    tower = {"rhythm_attention": "per_lead", "d_model": 32, "n_heads": 2, "n_layers": 2, "pooling": "mean"}
    return create_model("ecglang-small", ecg_tower=tower).eval()


@pytest.mark.parametrize("mode", ["summary", "per_lead"])
def test_absent_leads_and_padded_beats_do_not_change_the_embeddings(
    small: EcgLangModel, per_lead: EcgLangModel, mode: str
) -> None:
    model = small if mode == "summary" else per_lead
    assert model.config.ecg_tower["rhythm_attention"] == mode
    batch = synthetic_batch()
    batch["lead_mask"][:, 6:] = False
    noisy = {k: v.clone() for k, v in batch.items()}
    noisy["beats"][:, :, 6:] = 100 * torch.randn_like(noisy["beats"][:, :, 6:])  # absent leads
    pad = ~batch["beat_mask"]
    noisy["beats"][pad] = 55.0  # padded beats
    noisy["rr"][pad] = 9.0
    with torch.no_grad():
        a, b = model.encode_ecg(**batch), model.encode_ecg(**noisy)
    for key in ("rhythm_embeds", "beat_embeds", "token_embeds"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    # and the present leads do matter
    noisy["beats"][:, :, :6] += 1.0
    with torch.no_grad():
        c = model.encode_ecg(**noisy)
    assert not torch.allclose(a.rhythm_embeds, c.rhythm_embeds, atol=1e-3)


def test_fully_masked_rows_give_finite_outputs_and_loss(small: EcgLangModel) -> None:
    batch = synthetic_batch()
    batch["lead_mask"][0] = False  # an ECG with no usable lead
    batch["beat_mask"][1] = False  # an ECG where no beat was found
    batch["beat_mask"][:, 30:] = False
    out = small(**batch, texts=REPORTS)
    for name, value in [*out.ecg_outputs.items(), *out.text_outputs.items()]:
        assert torch.isfinite(value.float()).all(), name
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in small.parameters() if p.grad is not None)
    small.zero_grad(set_to_none=True)


def test_bad_inputs_raise_typed_errors(small: EcgLangModel) -> None:
    batch = synthetic_batch()
    with pytest.raises(ModelInputError, match="beats"):
        small.encode_ecg(**{**batch, "beats": batch["beats"][..., :50]})
    with pytest.raises(ModelInputError, match="lead_mask"):
        small.encode_ecg(**{**batch, "lead_mask": batch["lead_mask"][:, :8]})
    with pytest.raises(ModelInputError, match="rr"):
        small.encode_ecg(**{k: v for k, v in batch.items() if k != "rr"})
    with pytest.raises(ModelInputError, match="pairs must match"):
        small(**batch, texts=REPORTS[:3])
    with pytest.raises(ModelInputError, match="reports"):
        small(**batch)
    assert small.encode_text("a single string").text_embeds.shape[0] == 1  # one report, not 15 characters
    with pytest.raises(ModelInputError, match="list of strings"):
        small.encode_text(["a report", 3])
    with pytest.raises(ModelInputError, match=r"torch\.Tensor"):
        small.encode_ecg(**{**batch, "lead_mask": batch["lead_mask"].numpy()})
    with pytest.raises(ModelInputError, match="attention_mask"):
        small(**batch, input_ids=small.tokenize(REPORTS)["input_ids"])


def test_sentences_follow_the_report_text(small: EcgLangModel) -> None:
    text = "sinus rhythm. left axis deviation; 2.5 mm st elevation"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "sinus rhythm",
        "left axis deviation",
        "2.5 mm st elevation",
    ]
    enc = small.tokenize([text])
    tok = small.get_tokenizer()
    ids = enc["input_ids"][0][enc["token_mask"][0]]
    sids = enc["sentence_ids"][0][enc["token_mask"][0]]
    words = [tok.decode(ids[sids == s]) for s in range(3)]
    assert words == ["sinus rhythm.", "left axis deviation ;", "2. 5 mm st elevation"]
    assert (enc["sentence_ids"][0][~enc["token_mask"][0]] == -1).all()
    # a sentence embedding is the projected mean of its tokens' hidden states
    with torch.no_grad():
        out = small.encode_text(enc)
        hidden = small.text_tower(enc["input_ids"], enc["attention_mask"])["tokens"][0]
        first = hidden[enc["sentence_ids"][0] == 0].mean(0)
        expected = torch.nn.functional.normalize(small.sentence_proj.net(first), dim=-1)
    torch.testing.assert_close(out.sentence_embeds[0, 0], expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------- gradients
def _params_without_grad(model: torch.nn.Module) -> list[str]:
    return [
        name for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]  # fmt: skip


def test_gradients_reach_every_trainable_parameter_lora() -> None:
    torch.manual_seed(1)
    model = create_model("ecglang-small").train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    text_trainable = [n for n in trainable if n.startswith("text_tower.")]
    assert text_trainable and all("lora_" in n for n in text_trainable)  # only the adapter in the text tower
    assert any(n.startswith("ecg_tower.") for n in trainable)
    assert {"loss_fn.logit_scale.rhythm", "loss_fn.logit_scale.beat", "loss_fn.logit_scale.token"} <= set(trainable)
    # LoRA B starts at zero, so A gets no gradient on the very first step; one optimiser step fixes that.
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        out = model(**synthetic_batch(), texts=REPORTS)
        out.loss.backward()
        opt.step()
    assert _params_without_grad(model) == []


def test_gradients_reach_every_trainable_parameter_full_finetune_with_frozen_layers() -> None:
    torch.manual_seed(2)
    model = create_model("ecglang-small", text_tower={"finetune": "full", "freeze_layers": 2}).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("text_tower.model.") for n in frozen)
    assert any(".layer.0." in n for n in frozen) and any("embeddings" in n for n in frozen)
    assert not any(".layer.2." in n for n in frozen)
    out = model(**synthetic_batch(), texts=REPORTS)
    out.loss.backward()
    assert _params_without_grad(model) == []


def test_resnet_baseline_rhythm_only(resnet: EcgLangModel) -> None:
    batch = synthetic_batch(b=2, beats_per_ecg=(10, 12))
    batch["lead_mask"][1, 3:] = False
    resnet.train()
    out = resnet(**batch, texts=REPORTS[:2])
    resnet.eval()
    assert out.ecg_outputs.rhythm_embeds.shape == (2, 256) and out.ecg_outputs.rhythm_features.shape == (2, 512)
    assert out.ecg_outputs.beat_embeds is None and out.ecg_outputs.token_embeds is None
    assert set(out.losses) == {"rhythm"}  # beat and token losses are skipped for this tower
    out.loss.backward()
    assert _params_without_grad(resnet) == []
    resnet.zero_grad(set_to_none=True)
    with pytest.raises(ModelInputError, match="signal"):
        resnet.encode_ecg(**{k: v for k, v in batch.items() if k != "signal"})


def test_encoder_throughput_is_measured(small: EcgLangModel) -> None:
    """Encoder-only throughput at batch 64 (realistic ~12 beats per ECG). The bar is loose because CI cores
    are shared; docs/MODEL.md records the measured figure."""
    batch = synthetic_batch(b=64, beats_per_ecg=tuple(int(x) for x in np.random.default_rng(0).integers(9, 16, 64)))
    with torch.inference_mode():
        small.encode_ecg(**batch)
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            small.encode_ecg(**batch)
            best = min(best, time.perf_counter() - t0)
    assert 64 / best > 20, f"{64 / best:.0f} ECG/s"


# ------------------------------------------------------------------------------------ real PTB-XL data
@pytest.fixture(scope="module")
def ptbxl_pairs(ptbxl_dir) -> tuple[list, list[str]]:
    """16 PTB-XL records (500 Hz) with distinct reports (normalised to English as in pretraining)."""
    import pandas as pd

    from ecglang.record.io import load_ecg
    from ecglang.text.reports import normalize_report

    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    db["text"] = [normalize_report(r, "ptbxl") for r in db["report"]]
    db = db[db["text"].str.len() > 0].drop_duplicates("text").head(16)
    assert len(db) == 16
    return [load_ecg(ptbxl_dir / f) for f in db["filename_hr"]], list(db["text"])


@pytest.mark.shared_data
@pytest.mark.parametrize("n_leads", [1, 3, 6, 12])
def test_real_ptbxl_batch_with_lead_subsets(small: EcgLangModel, ptbxl_pairs, n_leads: int) -> None:
    ecgs, texts = ptbxl_pairs
    subset = parse_lead_subset(LEAD_SUBSETS[n_leads])
    reduced = [e.replace(signal=e.signal * subset[:, None], lead_mask=e.lead_mask & subset) for e in ecgs[:6]]
    batch = small.get_processor()(reduced)
    assert batch["beats"].shape == (6, 40, 12, 96)
    assert (batch["lead_mask"] == torch.from_numpy(subset)).all()
    with torch.no_grad():
        out = small(**batch, texts=texts[:6])
    ecg = out.ecg_outputs
    assert ecg.rhythm_embeds.shape == (6, 256) and ecg.token_embeds.shape == (6, 40, 12, 256)
    assert torch.isfinite(out.loss) and set(out.losses) == {"rhythm", "beat", "token"}
    n_beats = batch["beat_mask"].sum(1)
    assert ((n_beats >= 5) & (n_beats <= 25)).all()  # 10 s of sinus-ish rhythm
    token_norm = ecg.token_embeds.norm(dim=-1)
    assert (token_norm[:, :, ~torch.from_numpy(subset)] == 0).all()
    assert torch.allclose(ecg.beat_embeds.norm(dim=-1)[batch["beat_mask"]], torch.ones(int(n_beats.sum())), atol=1e-5)


@pytest.mark.slow
@pytest.mark.shared_data
def test_overfits_16_real_ecg_report_pairs(ptbxl_pairs) -> None:
    """Towers and all three losses learn together: ECG→report top-1 retrieval on 16 real pairs reaches
    ≥ 90 % within a few hundred CPU steps (in practice ~20-30)."""
    ecgs, texts = ptbxl_pairs
    torch.manual_seed(0)
    model = create_model("ecglang-small", ecg_tower={"dropout": 0.0})
    batch = model.get_processor()(ecgs)
    enc = model.tokenize(texts)
    target = torch.arange(16)

    def top1() -> float:
        model.eval()
        with torch.no_grad():
            e = model.encode_ecg(**batch).rhythm_embeds
            t = model.encode_text(enc).text_embeds
        model.train()
        return float(((e @ t.T).argmax(1) == target).float().mean())

    start = top1()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    first, acc, step = None, start, 0
    for step in range(1, 301):
        out = model(**batch, **enc)
        assert set(out.losses) == {"rhythm", "beat", "token"}
        first = first or {k: v.item() for k, v in out.losses.items()}
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step % 5 == 0:
            acc = top1()
            if acc >= 0.9:
                break
    assert start < 0.5, f"untrained retrieval already at {start:.2f}: the test would prove nothing"
    assert acc >= 0.9, f"top-1 {acc:.2f} after {step} steps"
    last = {k: v.item() for k, v in out.losses.items()}
    assert all(last[k] < 0.7 * first[k] for k in first), (first, last)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("tower", ["small", "resnet"])
def test_a_model_in_another_dtype_takes_the_processors_float32_batches(tower, dtype, request) -> None:
    """`from_pretrained(dtype=...)`, `.half()` and `.to(torch.float64)` all succeed, but every ECG then failed with
    `RuntimeError: Input type (float) and bias type (c10::BFloat16) should be the same`: inputs were moved to the
    model's device, never to its dtype."""
    import copy

    model = copy.deepcopy(request.getfixturevalue(tower)).to(dtype)
    batch = synthetic_batch(2, beats_per_ecg=(10, 12))
    out = model.encode_ecg(**batch)
    assert out.rhythm_embeds.dtype == dtype and torch.isfinite(out.rhythm_embeds).all()
    reference = request.getfixturevalue(tower).encode_ecg(**batch).rhythm_embeds
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out.rhythm_embeds.float(), reference, atol=tolerance, rtol=0)


def test_misspelt_keywords_are_errors_and_return_dict_false_gives_a_tuple(small) -> None:
    """`model(**batch, retrun_loss=False)` computed the loss anyway and `encode_ecg(output_attention=True)` gave no
    maps: both were swallowed by `**_`. `return_dict=False` was ignored."""
    batch = {k: v for k, v in synthetic_batch(2, beats_per_ecg=(10, 12)).items() if k != "signal"}
    with pytest.raises(TypeError, match="retrun_loss"):
        small(**batch, texts=REPORTS[:2], retrun_loss=False)
    with pytest.raises(TypeError, match="output_attention"):
        small.encode_ecg(**batch, output_attention=True)
    with torch.no_grad():
        full = small(**batch, texts=REPORTS[:2])
        as_tuple = small(**batch, texts=REPORTS[:2], return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], full.loss)
    assert torch.equal(as_tuple[1], full.logits_per_ecg)


def test_the_three_model_name_spaces_say_what_each_name_is() -> None:
    """`list_models()` named configs that `load_model` refused, `list_pretrained()` named published models that
    no call loads, and the one name `load_model` took (`ecglang-mini`) was in neither list."""
    import ecglang
    from ecglang.errors import ModelLoadError

    assert "ecglang-mini" in ecglang.list_checkpoints()
    with pytest.raises(ModelLoadError, match=r"architecture config: ecglang.create_model\('ecglang-small'\)"):
        ecglang.load_model("ecglang-small")
    with pytest.raises(ModelLoadError, match=r"published model \(Liu et al.*with `ecglang convert merl .*create_model"):
        ecglang.load_model("merl-resnet18")
    with pytest.raises(ModelLoadError, match=r"bundled checkpoints: \['ecglang-mini'"):
        ecglang.load_model("no-such-model")
    assert isinstance(ecglang.create_model("ecglang-small"), ecglang.EcgLangModel)


def test_feature_methods_give_the_embeddings_forward_compares(small) -> None:
    """transformers' CLIP has `get_image_features`/`get_text_features`; here `get_ecg_features` and
    `get_text_features` give the unit embeddings whose products, times the logit scale, are forward's logits."""
    batch = synthetic_batch(b=3)
    with torch.no_grad():
        ecg = small.get_ecg_features(**batch)
        text = small.get_text_features(REPORTS[:2])
        out = small(**batch, texts=REPORTS[:2], return_loss=False)
        one = small.get_text_features(REPORTS[0])
    assert ecg.shape == (3, small.config.projection["dim"]) and text.shape == (2, small.config.projection["dim"])
    torch.testing.assert_close(ecg, out.rhythm_embeds)
    torch.testing.assert_close(small.loss_fn.scale("rhythm") * ecg @ text.T, out.logits_per_ecg)
    torch.testing.assert_close(one, text[:1])
    with pytest.raises(TypeError):
        small.get_ecg_features(**batch, retrun_loss=False)
