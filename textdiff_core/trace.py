"""The record of one decoding run, frame by frame, and its exports: JSON, an animated GIF and an HTML player.

Diffusion and left-to-right decoding produce the same ``Trace``, so every view (the app's scrubber, the GIF, the HTML
player, the benchmark) reads one format. A frame is the state of the whole sequence after one step: the prompt (a
class prompt, then the user's text, never changed), the positions still masked, the positions committed at this step,
and each committed position's confidence and probability at the moment it was committed. Frame 0 is the state before
the first forward pass. Special tokens ([CLS], [SEP], BOS) are not part of frames.

Confidence is stored in the measure the run used (``max-prob`` and ``margin`` in [0, 1], ``entropy`` as the
*negative* entropy in nats, <= 0); ``confidence_score`` maps every measure to [0, 1] for thresholds and colours.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMAT_VERSION = 1
CONFIDENCE_MEASURES = ("max-prob", "margin", "entropy")
NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "'"}
CONTRACTIONS = {"t", "s", "re", "ve", "ll", "d", "m"}  # wordpiece "isn ' t" is written "isn't"
# background colours of committed tokens, by confidence score: low (red) -> middle (yellow) -> high (green)
SCALE = ((0.0, (244, 166, 166)), (0.5, (247, 224, 139)), (1.0, (168, 219, 168)))
PROMPT_BG, MASK_BG, NEW_OUTLINE, TEXT_RGB = (231, 238, 250), (190, 190, 190), (31, 79, 209), (20, 20, 20)


def confidence_score(value: float, measure: str) -> float:
    """A confidence value mapped to [0, 1]: max-prob and margin as they are, negative entropy -H as exp(-H).

    exp(-H) is the inverse perplexity of the prediction: 1 for a certain prediction, 1/V for a uniform one. It orders
    positions exactly as -H does, so thresholds and colours mean the same for every measure.
    """
    if measure == "entropy":
        return math.exp(min(value, 0.0))
    if measure in ("max-prob", "margin"):
        return min(max(value, 0.0), 1.0)
    raise ValueError(f"unknown confidence measure {measure!r}; choose one of {', '.join(CONFIDENCE_MEASURES)}")


@dataclass
class Frame:
    """The sequence after one decoding step (frame 0: before the first step).

    Lists are per position (prompt first, then the rest of the sequence). Left-to-right decoding reports positions
    not generated yet as ``masked=True``: to a viewer they are simply "not there yet".
    """

    step: int
    ids: list[int]  # token ids; masked positions hold the trace's mask_id
    tokens: list[str]  # each token as the tokenizer writes it alone (masked: the mask text)
    masked: list[bool]  # still masked (diffusion) / not generated yet (left-to-right)
    committed: list[int]  # positions committed at this step
    confidence: list[float | None]  # at commit time, in the run's measure; None where given or not committed yet
    prob: list[float | None]  # probability of the committed token under the model at commit time
    forward_passes: int  # cumulative model calls so far
    tokens_processed: int  # cumulative positions run through the model so far (what a KV cache saves)
    elapsed_s: float  # seconds since decoding started
    reused: bool = False  # this step reused the previous prediction instead of calling the model
    cached: bool = False  # this step ran only part of the sequence against cached keys and values (block KV cache)


@dataclass
class Trace:
    """Metadata of a decoding run and its frames; ``final_text`` is the user's text with the generation in place."""

    strategy: str  # the name of a registered strategy (textdiff_core.strategies), e.g. confidence or ar
    settings: dict  # every decoding setting (the run's DecodeConfig as a dict)
    model: str  # the model's name or path
    prompt: str  # the user's text as given (may contain masks to infill)
    label: str | None  # the class whose prompt came first, if any
    seed: int | None  # the seed actually used (drawn fresh when none was given)
    n_class_tokens: int  # leading positions holding the class prompt
    n_prompt_tokens: int  # leading positions before the appended generation (class prompt + user text)
    decoded: list[bool]  # per position: decoded by the run (masks to fill) or given
    mask_id: int  # id written at masked positions (-1 for tokenizers without a mask token)
    mask_text: str  # how a masked position is written in ``tokens``
    token_style: str  # "wordpiece" (pieces carry no spaces; ## joins) or "raw" (pieces carry their own spaces)
    final_text: str  # user text + generation, class prompt excluded
    generated_text: str  # the appended generation only (the whole user text when infilling without appending)
    frames: list[Frame] = field(default_factory=list)
    version: int = FORMAT_VERSION
    ended_at: int | None = None  # position where the model committed its end-of-text token; the text stops there

    @property
    def forward_passes(self) -> int:
        """Model calls the whole run took."""
        return self.frames[-1].forward_passes if self.frames else 0

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds the whole run took (tokenisation and export excluded)."""
        return self.frames[-1].elapsed_s if self.frames else 0.0

    @property
    def n_decoded(self) -> int:
        """How many positions the run decoded (up to and including the end-of-text, when the text ended)."""
        last = len(self.decoded) if self.ended_at is None else self.ended_at + 1
        return sum(self.decoded[:last])

    @property
    def tokens_per_pass(self) -> float:
        """Decoded tokens per forward pass: 1 for left-to-right, more when diffusion commits several at once."""
        return self.n_decoded / self.forward_passes if self.forward_passes else 0.0

    # ---- JSON ----

    def to_dict(self) -> dict:
        """Plain data (lists, numbers, strings), as written to JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Trace:
        """The inverse of ``to_dict``."""
        if data.get("version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError(f"trace format {data['version']} is newer than this textdiff ({FORMAT_VERSION})")
        known = {f.name for f in fields(cls)}
        if "spacing" in data and "token_style" not in data:  # traces written before the field was renamed
            data = {k: v for k, v in data.items() if k != "spacing"} | {"token_style": data["spacing"]}
        frames = [Frame(**frame) for frame in data.get("frames", [])]
        return cls(**{k: v for k, v in data.items() if k in known and k != "frames"}, frames=frames)

    def to_json(self, path: str | Path | None = None) -> str:
        """The trace as JSON text (exact: ``from_json(to_json())`` equals the trace); also written to ``path``."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Trace:
        """A trace from JSON text, or from a file (a ``Path``, or a string that does not start with '{')."""
        if isinstance(source, Path) or not source.lstrip().startswith("{"):
            source = Path(source).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(source))

    # ---- views shared by the GIF and the HTML player ----

    def score(self, value: float | None) -> float | None:
        """A stored confidence value mapped to [0, 1] (see ``confidence_score``)."""
        return None if value is None else confidence_score(value, self.settings.get("confidence", "max-prob"))

    def view(self, index: int) -> list[dict]:
        """How frame ``index`` is drawn: per position its text, leading space, state and colour.

        state is "prompt" (given text), "masked", "new" (committed at this step) or "done" (committed earlier);
        colour is the confidence colour of committed tokens (hex), "" otherwise.
        """
        frame = self.frames[index]
        new = set(frame.committed)
        out = []
        for i, token in enumerate(frame.tokens):
            if frame.masked[i]:
                state, text = "masked", ""
            else:
                state = "prompt" if not self.decoded[i] else ("new" if i in new else "done")
                text = token
            space = i > 0
            if self.token_style == "wordpiece":
                if text.startswith("##"):
                    text, space = text[2:], False
                elif text in NO_SPACE_BEFORE or (text in CONTRACTIONS and out and out[-1]["text"] == "'"):
                    space = False
            else:
                space = text[:1].isspace()
                text = text.strip(" ") if text.strip() else text
            text = text.replace("\n", "\u21b5")
            score = self.score(frame.confidence[i])
            tip = ""
            if score is not None:
                tip = f"confidence {frame.confidence[i]:.3f}, p(token) {frame.prob[i] or 0:.3f}"
            out.append({"text": text, "space": space, "state": state,
                        "colour": _hex(colour_of(score)) if score is not None else "", "tip": tip})
        return out

    def caption(self, index: int) -> str:
        """One line under the player / on top of a GIF frame: step, passes, time."""
        frame = self.frames[index]
        last = len(self.frames) - 1
        reused = " (prediction reused)" if frame.reused else ""
        passes = f"{frame.forward_passes} forward pass" + ("" if frame.forward_passes == 1 else "es")
        return (f"{self.strategy} · step {frame.step}/{self.frames[last].step} · {passes} · "
                f"{frame.elapsed_s:.2f} s{reused}")

    # ---- exports ----

    def to_gif(self, path: str | Path, width: int = 760, frame_ms: int = 350, last_ms: int = 2500) -> Path:
        """An animated GIF, one image per frame: masked positions as grey blocks, committed tokens coloured by
        confidence, the tokens committed at each step outlined, lines wrapped to ``width`` pixels."""
        # deferred: only GIF export needs Pillow
        from PIL import Image, ImageDraw

        font, bold = _font(16), _font(16, bold=True)
        layouts = [self._layout(self.view(i), font, bold, width) for i in range(len(self.frames))]
        line_h, top = 28, 40
        lines = max((max((y for _, y, *_ in lay), default=0) for lay in layouts), default=0) + 1
        height = top + lines * line_h + 56
        images = []
        for index, layout in enumerate(layouts):
            image = Image.new("RGB", (width, height), "white")
            draw = ImageDraw.Draw(image)
            draw.text((12, 10), self.caption(index), fill=(90, 90, 90), font=font)
            for x, line, w, item in layout:
                y = top + line * line_h
                box = (x - 2, y - 2, x + w + 2, y + 21)
                if item["state"] == "masked":
                    draw.rounded_rectangle(box, radius=3, fill=MASK_BG)
                    continue
                fill = PROMPT_BG if item["state"] == "prompt" else _rgb(item["colour"]) if item["colour"] else None
                if fill is not None:
                    draw.rectangle(box, fill=fill)
                if item["state"] == "new":
                    draw.rectangle(box, outline=NEW_OUTLINE, width=2)
                draw.text((x, y), item["text"], fill=TEXT_RGB, font=bold if item["state"] == "new" else font)
            _gif_legend(draw, font, 12, height - 34, self.settings.get("confidence", "max-prob"))
            images.append(image)
        durations = [frame_ms] * (len(images) - 1) + [last_ms]
        path = Path(path)
        images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False,
                       disposal=1)
        return path

    @staticmethod
    def _layout(view: list[dict], font, bold, width: int) -> list[tuple[int, int, int, dict]]:
        """(x, line, width, item) per position, wrapping at ``width`` (tokens are never split across lines)."""
        margin, space_w, mask_w = 12, max(int(font.getlength(" ")), 4), 30
        placed, x, line = [], margin, 0
        for item in view:
            face = bold if item["state"] == "new" else font
            w = mask_w if item["state"] == "masked" else max(int(face.getlength(item["text"])), 4)
            gap = space_w + 4 if item["space"] else 0
            if placed and x + gap + w > width - margin:
                x, line, gap = margin, line + 1, 0
            placed.append((x + gap, line, w, item))
            x += gap + w
        return placed

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """A self-contained HTML player: the trace embedded as JSON, vanilla JavaScript, no network resources.

        Controls: play/pause button and step slider; keys space (play/pause), left/right (step), Home/End.
        """
        payload = {"trace": self.to_dict(), "views": [self.view(i) for i in range(len(self.frames))],
                   "captions": [self.caption(i) for i in range(len(self.frames))]}
        data = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # safe inside <script>
        measure = self.settings.get("confidence", "max-prob")
        stops = ", ".join(f"{_hex(rgb)} {int(at * 100)}%" for at, rgb in SCALE)
        page = (_HTML.replace("__TITLE__", html.escape(title or f"textdiff: {self.strategy} decoding"))
                .replace("__MEASURE__", html.escape(measure))
                .replace("__GRADIENT__", stops)
                .replace("__PROMPT_BG__", _hex(PROMPT_BG)).replace("__MASK_BG__", _hex(MASK_BG))
                .replace("__NEW__", _hex(NEW_OUTLINE))
                .replace("__DATA__", data))
        path = Path(path)
        path.write_text(page, encoding="utf-8")
        return path


def colour_of(score: float) -> tuple[int, int, int]:
    """The background colour of a committed token with confidence score in [0, 1] (red -> yellow -> green)."""
    score = min(max(score, 0.0), 1.0)
    for (a, ca), (b, cb) in zip(SCALE, SCALE[1:], strict=False):
        if score <= b:
            f = (score - a) / (b - a)
            return tuple(round(x + (y - x) * f) for x, y in zip(ca, cb, strict=True))
    return SCALE[-1][1]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _font(size: int, bold: bool = False):
    """DejaVu Sans when the system has it (readable, wide Unicode coverage), else Pillow's built-in font."""
    # deferred: only GIF export needs Pillow
    from PIL import ImageFont

    for name in (("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf") if bold else ("DejaVuSans.ttf",
                                                                                   "LiberationSans-Regular.ttf")):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _gif_legend(draw, font, x: int, y: int, measure: str) -> None:
    items = [("prompt", PROMPT_BG, None), ("masked", MASK_BG, None), ("new this step", (255, 255, 255), NEW_OUTLINE)]
    for text, fill, outline in items:
        draw.rectangle((x, y + 2, x + 16, y + 18), fill=fill, outline=outline, width=2 if outline else 1)
        draw.text((x + 22, y), text, fill=(60, 60, 60), font=font)
        x += 30 + int(font.getlength(text)) + 14
    draw.text((x, y), f"{measure}: low", fill=(60, 60, 60), font=font)
    x += int(font.getlength(f"{measure}: low")) + 6
    for i in range(60):
        draw.line((x + i, y + 2, x + i, y + 18), fill=colour_of(i / 59))
    draw.text((x + 66, y), "high", fill=(60, 60, 60), font=font)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 24px; color: #141414; max-width: 960px; }
  #controls { display: flex; gap: 12px; align-items: center; margin: 12px 0; }
  #slider { flex: 1; }
  #caption { color: #555; font-size: 14px; min-height: 1.2em; }
  #text { font-size: 18px; line-height: 2.1; padding: 12px; border: 1px solid #ddd; border-radius: 6px; }
  .tok { padding: 2px 3px; border-radius: 3px; }
  .prompt { background: __PROMPT_BG__; }
  .masked { background: __MASK_BG__; display: inline-block; width: 28px; height: 1.1em; vertical-align: middle; }
  .new { outline: 2px solid __NEW__; font-weight: bold; }
  #legend { display: flex; gap: 18px; align-items: center; font-size: 13px; color: #444; margin-top: 12px; }
  .swatch { display: inline-block; width: 16px; height: 16px; vertical-align: middle; margin-right: 4px; }
  .scale { display: inline-block; width: 90px; height: 14px; vertical-align: middle;
           background: linear-gradient(to right, __GRADIENT__); }
  #meta { font-size: 13px; color: #555; margin-top: 12px; white-space: pre-wrap; }
  button { font-size: 15px; min-width: 80px; }
</style>
</head>
<body>
<h2>__TITLE__</h2>
<div id="controls">
  <button id="play" title="space">Play</button>
  <input id="slider" type="range" min="0" value="0" step="1" aria-label="step">
  <span id="pos"></span>
</div>
<div id="caption"></div>
<div id="text"></div>
<div id="legend">
  <span><span class="swatch prompt"></span>prompt</span>
  <span><span class="swatch masked"></span>masked</span>
  <span><span class="swatch new" style="background:#fff"></span>committed this step</span>
  <span>__MEASURE__ at commit: low <span class="scale"></span> high</span>
  <span>keys: space play/pause, &larr; &rarr; step, Home/End</span>
</div>
<div id="meta"></div>
<script id="trace-data" type="application/json">__DATA__</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var views = data.views, captions = data.captions, trace = data.trace;
  var slider = document.getElementById("slider"), playButton = document.getElementById("play");
  var textBox = document.getElementById("text"), pos = document.getElementById("pos");
  var index = 0, timer = null;
  slider.max = String(views.length - 1);
  function render() {
    textBox.textContent = "";
    views[index].forEach(function (item) {
      if (item.space) { textBox.appendChild(document.createTextNode(" ")); }
      var span = document.createElement("span");
      span.className = "tok " + item.state;
      span.textContent = item.text;
      if (item.colour) { span.style.background = item.colour; }
      if (item.tip) { span.title = item.tip; }
      textBox.appendChild(span);
    });
    slider.value = String(index);
    pos.textContent = index + " / " + (views.length - 1);
    document.getElementById("caption").textContent = captions[index];
  }
  function go(i) { index = Math.max(0, Math.min(views.length - 1, i)); render(); }
  function stop() { if (timer !== null) { clearInterval(timer); timer = null; } playButton.textContent = "Play"; }
  function play() {
    if (index >= views.length - 1) { go(0); }
    playButton.textContent = "Pause";
    timer = setInterval(function () { if (index >= views.length - 1) { stop(); } else { go(index + 1); } }, 350);
  }
  function toggle() { if (timer === null) { play(); } else { stop(); } }
  playButton.addEventListener("click", toggle);
  slider.addEventListener("input", function () { stop(); go(parseInt(slider.value, 10)); });
  document.addEventListener("keydown", function (e) {
    if (e.target === slider && e.key !== " ") { return; }
    if (e.key === " ") { e.preventDefault(); toggle(); }
    else if (e.key === "ArrowRight") { e.preventDefault(); stop(); go(index + 1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); stop(); go(index - 1); }
    else if (e.key === "Home") { e.preventDefault(); stop(); go(0); }
    else if (e.key === "End") { e.preventDefault(); stop(); go(views.length - 1); }
  });
  var last = trace.frames[trace.frames.length - 1];
  document.getElementById("meta").textContent =
    "model: " + trace.model + "\\nstrategy: " + trace.strategy + "   seed: " + trace.seed +
    "\\nforward passes: " + last.forward_passes + "   time: " + last.elapsed_s.toFixed(2) + " s" +
    "\\nsettings: " + JSON.stringify(trace.settings) + "\\nfinal text: " + trace.final_text;
  render();
})();
</script>
</body>
</html>
"""
