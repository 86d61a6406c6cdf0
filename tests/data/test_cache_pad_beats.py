"""A record shorter than the fixed length is padded by preprocessing, and zero-shot (`tokenize_beats` on the
preprocessed `Ecg`) looks for beats in the record only, not in the padding (`metadata["pad_samples"]`). Training
pairs and cache rows (held-out validation, scoring a cache) read the padded signal from the signal cache: they
found beats in the padding (a QRS cut at the record's end became an extra beat with `pad="zero"`, and every short
record gained copied beats with `pad="repeat"`), so training and inference cut CPSC 2018, Chapman or CinC records
differently. The cache now keeps each row's pad length (format 2) and its readers search the same samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecglang.beats.tokenize import BeatConfig, BeatTokens, tokenize_beats
from ecglang.data.cache import META_FILE, PAD_FILE, PROGRESS_FILE, SignalCache
from ecglang.data.prepared import ShardedCache
from ecglang.embeddings.pipeline import BatchPreparer
from ecglang.embeddings.sources import CacheSource
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg
from ecglang.signal.augment import AugmentConfig
from ecglang.signal.preprocess import PreprocessConfig, preprocess
from ecglang.training.pairs import PairTable, PretrainPairs

NAMES = ["00001_hr", "00002_hr", "00003_hr", "00004_hr", "00013_hr"]
BEATS = BeatConfig()
PADS = ("zero", "repeat")


@pytest.fixture(scope="module")
def short_records(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """Real PTB-XL records cut to 6-8 s, each just past an R peak (what a recorder stopping mid-beat
    leaves), written as WFDB files: what the cache and zero-shot both read."""
    folder = tmp_path_factory.mktemp("short-ptbxl")
    out = []
    for j, name in enumerate(NAMES):
        ecg = load_ecg(ptbxl_dir / "records500" / "00000" / name)
        peaks = tokenize_beats(preprocess(ecg, PreprocessConfig()), BEATS).rpeaks  # 500 Hz, as the file
        cut = int(peaks[peaks > (6.0 + 0.4 * j) * ecg.fs][0]) + round(0.004 * ecg.fs)
        wfdb.wrsamp(
            name, fs=ecg.fs, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF", *[f"V{i}" for i in
            range(1, 7)]], p_signal=np.asarray(ecg.signal[:, :cut].T, dtype=np.float64), fmt=["16"] * 12,
            write_dir=str(folder),
        )  # fmt: skip
        out.append((name, str(folder / name)))
    return out


@pytest.fixture(scope="module")
def caches(short_records: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, SignalCache]:
    root = tmp_path_factory.mktemp("pad-caches")
    return {
        pad: SignalCache.build(short_records, root / pad, PreprocessConfig(pad=pad), progress=False) for pad in PADS
    }


def zero_shot(path: str, cfg: PreprocessConfig) -> BeatTokens:
    """The beats zero-shot cuts from a record file: read, preprocess, `tokenize_beats`."""
    return tokenize_beats(preprocess(load_ecg(path, window=cfg.read_window()), cfg), BEATS)


def assert_same_beats(got: np.ndarray, expected: BeatTokens, what: str) -> None:
    """`got`: beat times (s) of a cache reader; the same beats as zero-shot's, to a sample (float16 rows)."""
    want = expected.times[: expected.n_beats]
    assert len(got) == len(want), f"{what}: {len(got)} beats at {np.round(got, 2)} s, zero-shot {np.round(want, 2)}"
    np.testing.assert_allclose(got, want, atol=2.5 / expected.fs, err_msg=what)


def pairs_of(cache: SignalCache, augment: AugmentConfig | None = None) -> PretrainPairs:
    table = PairTable(cache.ok_rows, [cache.ids[r] for r in cache.ok_rows], ["sinus rhythm."] * len(cache.ok_rows))
    return PretrainPairs(cache, table, BEATS, augment=augment, seed=3)


@pytest.mark.parametrize("pad", PADS)
def test_training_pairs_cut_the_beats_zero_shot_cuts(caches: dict[str, SignalCache], pad: str) -> None:
    cache = caches[pad]
    assert cache.failures.empty and len(cache) == len(NAMES)
    pairs = pairs_of(cache)
    for i in range(len(pairs)):
        item = pairs[i]
        assert not item.get("skip"), item
        expected = zero_shot(cache.paths[int(pairs.pairs.rows[i])], cache.config)
        assert_same_beats(item["times"][item["beat_mask"]], expected, f"pad={pad} {item['id']}")


@pytest.mark.parametrize("pad", PADS)
def test_cache_rows_scored_or_validated_cut_the_beats_zero_shot_cuts(caches: dict[str, SignalCache], pad: str) -> None:
    cache = caches[pad]
    batch = BatchPreparer(CacheSource(cache), EcgProcessor(cache.config, BEATS), batch_size=8, keep_views=True)[0]
    assert not batch.failures and len(batch.views) == len(NAMES)
    for (_, tokens), row in zip(batch.views, batch.positions, strict=True):
        expected = zero_shot(cache.paths[row], cache.config)
        assert_same_beats(tokens.times[: tokens.n_beats], expected, f"pad={pad} {cache.ids[row]}")


@pytest.mark.parametrize("pad", PADS)
def test_augmented_training_pairs_find_no_beat_in_the_padding(caches: dict[str, SignalCache], pad: str) -> None:
    """The augmentation's shift moves the padding earlier: beats are searched in what is left of the record."""
    cache = caches[pad]
    pairs = pairs_of(cache, AugmentConfig(lead_mask_p=0.0, amplitude_scale=None, time_shift_ms=400, noise_std=0.0))
    _, _, t = cache.shape
    for epoch in range(3):
        for i in range(len(pairs)):
            item = pairs[(epoch, i)]
            assert not item.get("skip"), item
            n_valid = cache.n_valid(int(pairs.pairs.rows[i]))
            assert n_valid is not None and n_valid < t
            times = item["times"][item["beat_mask"]]
            assert times.max() < n_valid / cache.fs, f"pad={pad} {item['id']}: beats at {np.round(times, 2)} s"


def test_the_cache_keeps_each_rows_pad(caches: dict[str, SignalCache]) -> None:
    cache = caches["zero"]
    _, _, t = cache.shape
    for row in range(len(cache)):
        clean = preprocess(load_ecg(cache.paths[row]), cache.config)
        assert cache.n_valid(row) == t - clean.metadata["pad_samples"]
        signal, _ = cache[row]
        assert not signal[:, cache.n_valid(row) :].any()  # zero padding: the tail is what was padded


def test_a_prepared_folders_shards_say_their_rows_pad(caches: dict[str, SignalCache]) -> None:
    """Training on `data.prepared` reads the shards as one (`ShardedCache`): each row's pad comes from its shard."""
    root, config = caches["zero"].directory.parent, caches["zero"].config.to_dict()
    manifest = {
        "shards": [{"dir": pad, "start": 5 * k} for k, pad in enumerate(PADS)],
        "n_rows": 10,
        "preprocess": config,
    }
    rows = ShardedCache(root, manifest)
    assert [rows.n_valid(r) for r in range(10)] == [caches[pad].n_valid(r) for pad in PADS for r in range(5)]


def test_a_resumed_or_repaired_build_keeps_the_pads(caches: dict[str, SignalCache], tmp_path: Path) -> None:
    """Rows redone after a kill get their pad again; a pad file lost or of another size is repaired (all rows)."""
    done = caches["zero"]
    records = list(zip(done.ids, done.paths, strict=True))
    expected = [done.n_valid(r) for r in range(len(done))]
    folder = tmp_path / "cache"
    shutil.copytree(done.directory, folder)
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "complete": False}))  # killed after row 1
    np.array([1, 1, 0, 0, 0], np.uint8).tofile(folder / PROGRESS_FILE)
    pads = np.load(folder / PAD_FILE, mmap_mode="r+")
    pads[2:] = 0
    pads.flush()
    del pads
    again = SignalCache.build(records, folder, done.config, progress=False)
    assert again.build_stats.resumed and again.build_stats.n_processed == 3
    assert [again.n_valid(r) for r in range(len(again))] == expected
    np.save(folder / PAD_FILE, np.zeros(3, np.int32))
    (folder / META_FILE).write_text(json.dumps({**meta, "complete": False}))
    again = SignalCache.build(records, folder, done.config, progress=False)
    assert any("pad file" in r for r in again.build_stats.repaired) and again.build_stats.n_processed == 5
    assert [again.n_valid(r) for r in range(len(again))] == expected


def test_a_cache_of_format_1_still_opens_and_reads_as_before(
    caches: dict[str, SignalCache], tmp_path: Path, caplog
) -> None:
    """A cache built before format 2 has no pad file: it opens, its pads are unknown (beats are searched in the whole
    row, as then), and building over it reuses it as it is."""
    old = tmp_path / "v1"
    shutil.copytree(caches["zero"].directory, old)
    (old / PAD_FILE).unlink()
    meta = json.loads((old / META_FILE).read_text())
    (old / META_FILE).write_text(json.dumps({**meta, "version": 1}))
    cache = SignalCache.open(old)
    assert cache.n_valid(0) is None
    item = pairs_of(cache)[0]
    assert not item.get("skip") and item["beat_mask"].sum() >= 2
    with caplog.at_level("WARNING", logger="ecglang.data.cache"):
        again = SignalCache.build(list(zip(cache.ids, cache.paths, strict=True)), old, cache.config, progress=False)
    assert again.build_stats.n_processed == 0 and again.n_valid(0) is None
    assert "format 1" in caplog.text and "rebuild" in caplog.text


@pytest.mark.parametrize(
    "bad", [np.full(5, -1, np.int32), np.full(5, 5000, np.int32), np.zeros(4, np.int32), np.zeros(5, np.float32)]
)
def test_a_bad_pad_file_is_a_read_error_naming_it(caches: dict[str, SignalCache], tmp_path: Path, bad) -> None:
    folder = tmp_path / "cache"
    shutil.copytree(caches["zero"].directory, folder)
    np.save(folder / PAD_FILE, bad)
    with pytest.raises(EcgReadError) as info:
        SignalCache.open(folder)
    assert PAD_FILE in str(info.value)
    (folder / PAD_FILE).unlink()
    with pytest.raises(EcgReadError, match=PAD_FILE):
        SignalCache.open(folder)
