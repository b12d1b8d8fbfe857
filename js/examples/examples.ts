// Unit detail extras: the view selector (channel | neuron | ... | caricature) and the open unit's
// top and bottom dataset examples (thumbnail with the receptive field drawn in, plus the crop).
import { BlobUrls, signature, toBytes } from "../shared/binary";
import { Bindings, flag, formatNumber, h } from "../shared/dom";
import type { AnyModel, ExampleItem } from "../shared/types";
import { IMAGE_VIEWS, UNIT_VIEWS, type UnitView } from "../shared/views";

/** Each view's tooltip; a Record so a view added in Python without a title fails the typecheck. */
const TITLES: Record<UnitView, string> = {
  channel: "Maximize the unit's mean activation over all positions",
  neuron: "Maximize the unit at the centre position",
  negative: "Minimize the unit",
  diversity: "Four images at once, pushed apart by a diversity penalty",
  deepdream: "Start from the sample image and amplify what this layer sees in it",
  caricature: "Feature inversion: an image whose layer activations match the sample image's",
  accentuation: "Feature accentuation: the sample image changed to raise the unit, its activations kept near the photo's",
};
const NEEDS_SAMPLE = new Set<UnitView>(IMAGE_VIEWS);

export function hasSample(model: AnyModel): boolean {
  const info = model.get("sample_info") ?? {};
  return info.state === "done" || Boolean(toBytes(model.get("sample_image"))?.length);
}

export function unitViews(model: AnyModel, bindings: Bindings): HTMLElement {
  const buttons = UNIT_VIEWS.map((view) =>
    h("button", { type: "button", class: "lw-seg-item", "data-value": view, "data-testid": `lw-unit-view-${view}`, title: TITLES[view] }, view),
  );
  const hint = h("span", { class: "lw-hint", "data-testid": "lw-unit-view-hint" }, `${IMAGE_VIEWS.join(" / ")} need a sample image (below)`);
  const root = h("div", { class: "lw-unit-views" }, h("div", { class: "lw-seg", role: "group", "data-testid": "lw-unit-views" }, ...buttons), hint);
  const draw = (): void => {
    const sample = hasSample(model);
    const locked = model.get("readonly");
    for (const button of buttons) {
      const view = button.dataset.value as UnitView;
      button.setAttribute("aria-pressed", view === model.get("unit_view") ? "true" : "false");
      button.disabled = locked || (NEEDS_SAMPLE.has(view) && !sample);
    }
    hint.hidden = sample || locked;
  };
  for (const button of buttons) {
    bindings.listen(button, "click", () => {
      if (!button.disabled) model.send({ type: "unit_view", view: button.dataset.value as UnitView });
    });
  }
  bindings.on(["unit_view", "sample_info", "sample_image", "readonly"], draw);
  draw();
  return root;
}

function exampleCard(model: AnyModel, item: ExampleItem, urls: BlobUrls, blob: Uint8Array | null): HTMLElement {
  const image = h("img", { class: "lw-example-image", "data-testid": "lw-example-image", alt: `dataset image ${item.source}`, draggable: "false" });
  const crop = h("img", { class: "lw-example-crop", "data-testid": "lw-example-crop", alt: "receptive-field crop", draggable: "false" });
  const imageUrl = urls.url(blob, item.image);
  const cropUrl = urls.url(blob, item.crop);
  if (imageUrl) image.src = imageUrl;
  if (cropUrl) crop.src = cropUrl;
  const card = h(
    "button",
    {
      type: "button",
      class: "lw-example",
      "data-testid": "lw-example",
      "data-which": item.which,
      "data-rank": item.rank,
      "data-index": item.index,
      title: `${item.source} · activation ${formatNumber(item.value)} · click: use as the sample image`,
    },
    h("span", { class: "lw-example-pics" }, crop, image),
    h(
      "span",
      { class: "lw-example-caption" },
      h("span", { class: "lw-example-value", "data-testid": "lw-example-value" }, formatNumber(item.value)),
      h("span", { class: "lw-example-source" }, item.source),
    ),
  );
  card.disabled = model.get("readonly");
  card.addEventListener("click", () => model.send({ type: "sample_example", index: item.index }));
  return card;
}

export function unitExamples(model: AnyModel, bindings: Bindings): HTMLElement {
  const status = h("span", { class: "lw-examples-status", "data-testid": "lw-examples-status" });
  const bar = h("div", { class: "lw-progress-bar lw-indeterminate" }, h("div", { class: "lw-progress-fill" }));
  const rows = (["top", "bottom"] as const).map((which) => {
    const cards = h("div", { class: "lw-example-cards" });
    const label = h("div", { class: "lw-examples-label" }, which === "top" ? "Top examples" : "Bottom examples", h("span", { class: "lw-hint" }, which === "top" ? "spatial max" : "spatial min"));
    const row = h("div", { class: "lw-examples-row", "data-testid": "lw-examples-row", "data-which": which }, label, cards);
    return { which, row, cards };
  });
  const empty = h("div", { class: "lw-empty lw-examples-empty", "data-testid": "lw-examples-empty" }, "No dataset: call w.set_dataset(images) to see the images that excite and inhibit each unit most.");
  const root = h(
    "section",
    { class: "lw-examples", "data-testid": "lw-examples" },
    h("header", { class: "lw-examples-head" }, h("span", { class: "lw-section-title" }, "Dataset examples"), status, bar),
    empty,
    ...rows.map((entry) => entry.row),
  );
  const urls = new BlobUrls(bindings);
  let drawn = "";

  const draw = (): void => {
    const info = model.get("examples_status") ?? {};
    const examples = model.get("unit_examples") ?? {};
    const layer = model.get("layer");
    const unit = model.get("unit");
    const state = info.state ?? "idle";
    root.dataset.state = state;
    root.hidden = unit < 0;
    const size = info.size ? ` over ${info.size} images` : "";
    const texts: Record<string, string> = {
      idle: "",
      waiting: "waiting for the worker…",
      running: `computing for ${info.layer ?? layer}${size}…`,
      done: `top and bottom ${info.k ?? ""} of ${info.size ?? "?"} images${info.skipped ? ` · ${info.skipped} unreadable` : ""}`,
      stopped: `stopped after ${info.done ?? 0} images${size}; Resume continues`,
      error: `error: ${info.message ?? ""}`,
    };
    status.textContent = texts[state] ?? "";
    status.dataset.state = state;
    bar.hidden = !(state === "running" || state === "waiting");
    empty.hidden = state !== "idle";
    const fresh = examples.layer === layer && examples.unit === unit && state !== "idle";
    const blob = toBytes(model.get("unit_examples_blob"));
    const key = JSON.stringify([fresh, examples, model.get("readonly")]) + (blob ? signature(blob) : "");
    if (key === drawn) return; // unchanged: keep the decoded images (and their URLs)
    drawn = key;
    urls.clear();
    for (const { which, row, cards } of rows) {
      const items = fresh ? (examples.items ?? []).filter((item) => item.which === which) : [];
      cards.replaceChildren(...items.map((item) => exampleCard(model, item, urls, blob)));
      row.hidden = !fresh;
      flag(row, "data-ready", items.length > 0);
    }
  };
  bindings.on(["examples_status", "unit_examples", "unit_examples_blob", "layer", "unit", "readonly"], draw);
  draw();
  return root;
}
