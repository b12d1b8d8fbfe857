// Sample panel: the building-blocks views of the open layer (Microscope.sample_view): neuron
// groups, semantic dictionary, activation grid, spatial attribution. "units" is the panel's own
// top-units list (sample.ts); this module draws the other four from sample_blocks(_blob).
import { BlobUrls, objectUrl, signature, toBytes } from "../shared/binary";
import { Bindings, formatNumber, h } from "../shared/dom";
import type { AnyModel, AttributedUnit, BlobEntry, SampleBlocks, SampleViewName } from "../shared/types";

const VIEWS: Record<SampleViewName, string> = {
  units: "The units this image excites most",
  groups: "Neuron groups: units that fire together at the same places (NMF)",
  dictionary: "Semantic dictionary: hover a position to see its top units",
  grid: "Activation grid: a visualization of the activation vector at every position",
  attribution: "Spatial attribution to a class: where and which units support it",
};

type Ctx = { model: AnyModel; urls: BlobUrls; blob: Uint8Array | null; info: SampleBlocks; photo: string | null };

function img(ctx: Ctx, entry: BlobEntry | null | undefined, cls: string, testid: string, alt: string): HTMLElement {
  const url = ctx.urls.url(ctx.blob, entry);
  if (!url) return h("span", { class: `${cls} lw-blocks-pending`, "data-testid": `${testid}-pending`, title: "rendering…" }, "…");
  return h("img", { class: cls, "data-testid": testid, src: url, alt });
}

function groupsView(ctx: Ctx): HTMLElement[] {
  const { info, model } = ctx;
  const label = info.target_label ? `attribution to “${info.target_label}”` : "attribution";
  const cards = (info.groups ?? []).map((group) => {
    const [r, g, b] = group.color;
    const button = h(
      "button",
      { type: "button", class: "lw-group", "data-testid": "lw-group", "data-group": group.group, title: `group ${group.group} · top units ${group.units.join(", ")} · click: render its direction live` },
      h("span", { class: "lw-example-pics" }, img(ctx, group.map, "lw-group-map", "lw-group-map", `group ${group.group} map`), img(ctx, group.image, "lw-group-image", "lw-group-image", `group ${group.group} visualization`)),
      h("span", { class: "lw-example-caption" }, h("span", { class: "lw-group-swatch", style: `background: rgb(${r}, ${g}, ${b})` }), h("span", {}, `group ${group.group}`), h("span", { class: "lw-group-attr", "data-testid": "lw-group-attribution", title: label }, group.attribution === null ? "" : formatNumber(group.attribution))),
    );
    button.disabled = model.get("readonly");
    button.addEventListener("click", () => model.send({ type: "open_group", group: group.group }));
    return button;
  });
  const overlay = img(ctx, info.overlay, "lw-blocks-picture", "lw-groups-overlay", "neuron groups over the image");
  const note = h("div", { class: "lw-hint" }, `${cards.length} groups · numbers: ${label} · reconstruction error ${formatNumber(info.error ?? 0)}`);
  return [h("div", { class: "lw-blocks-main" }, overlay, h("div", { class: "lw-blocks-side" }, note, h("div", { class: "lw-sample-units" }, ...cards)))];
}

function dictionaryView(ctx: Ctx): HTMLElement[] {
  const { info } = ctx;
  const height = info.height ?? 0;
  const width = info.width ?? 0;
  const thumbs: Record<string, string | null> = {};
  for (const [unit, entry] of Object.entries(info.thumbs ?? {})) thumbs[unit] = ctx.urls.url(ctx.blob, entry);
  const list = h("div", { class: "lw-sample-units", "data-testid": "lw-dictionary-units" });
  const caption = h("div", { class: "lw-hint", "data-testid": "lw-dictionary-caption" }, "Hover a position of the image");
  const show = (y: number, x: number): void => {
    const units = info.units?.[y]?.[x] ?? [];
    const values = info.values?.[y]?.[x] ?? [];
    caption.textContent = `Position (x ${x}, y ${y}): top units`;
    list.replaceChildren(...units.map((unit, rank) => {
      const url = thumbs[String(unit)];
      const size = 36 + 36 * Math.max(0, Math.min(1, values[rank] / (info.peak || 1)));
      const pic = url ? h("img", { class: "lw-dict-thumb", src: url, alt: `unit ${unit}`, style: `width:${size}px;height:${size}px` }) : h("span", { class: "lw-sample-nothumb" }, "…");
      const card = h("button", { type: "button", class: "lw-sample-unit", "data-testid": "lw-dictionary-unit", "data-unit": unit, title: `unit ${unit} · ${formatNumber(values[rank])} · click: open it` }, pic, h("span", { class: "lw-example-caption" }, h("span", {}, `${unit}`), h("span", {}, formatNumber(values[rank]))));
      card.disabled = ctx.model.get("readonly");
      card.addEventListener("click", () => ctx.model.send({ type: "open_unit", unit, layer: info.layer }));
      return card;
    }));
  };
  const cells = h("div", { class: "lw-dict-cells", style: `grid-template-columns: repeat(${width}, 1fr); grid-template-rows: repeat(${height}, 1fr)` });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = h("span", { class: "lw-dict-cell", "data-testid": "lw-dictionary-cell", "data-x": x, "data-y": y });
      cell.addEventListener("mouseenter", () => show(y, x));
      cells.append(cell);
    }
  }
  const photo = h("div", { class: "lw-blocks-picture lw-dict-photo" }, ctx.photo ? h("img", { src: ctx.photo, alt: "sample" }) : "", cells);
  return [h("div", { class: "lw-blocks-main" }, photo, h("div", { class: "lw-blocks-side" }, caption, list))];
}

function gridView(ctx: Ctx): HTMLElement[] {
  const { info } = ctx;
  const height = info.height ?? 0;
  const width = info.width ?? 0;
  const grid = h("div", { class: "lw-agrid", "data-testid": "lw-activation-grid", style: `grid-template-columns: repeat(${width}, 1fr)` });
  const byPos = new Map((info.cells ?? []).map((cell) => [`${cell.y},${cell.x}`, cell]));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = byPos.get(`${y},${x}`);
      const url = cell ? ctx.urls.url(ctx.blob, cell.image) : null;
      grid.append(url ? h("img", { class: "lw-agrid-cell", "data-testid": "lw-grid-cell", src: url, alt: `(${x}, ${y})` }) : h("span", { class: "lw-agrid-cell lw-agrid-empty" }));
    }
  }
  const total = height * width - (info.skipped?.length ?? 0);
  const note = h("div", { class: "lw-hint", "data-testid": "lw-grid-count" }, `${info.cells?.length ?? 0} / ${total} positions rendered${info.skipped?.length ? ` · ${info.skipped.length} skipped (tiny activation)` : ""}`);
  return [note, grid];
}

function unitCards(ctx: Ctx, units: AttributedUnit[], which: string): HTMLElement {
  return h("div", { class: "lw-sample-units", "data-testid": `lw-attribution-${which}` }, ...units.map((entry) => {
    const card = h("button", { type: "button", class: "lw-sample-unit", "data-testid": "lw-attribution-unit", "data-unit": entry.unit, title: `unit ${entry.unit} · attribution ${formatNumber(entry.value)} · click: open it` }, img(ctx, entry.thumb, "lw-sample-thumb", "lw-attribution-thumb", `unit ${entry.unit}`), h("span", { class: "lw-example-caption" }, h("span", {}, `${entry.unit}`), h("span", {}, formatNumber(entry.value))));
    card.disabled = ctx.model.get("readonly");
    card.addEventListener("click", () => ctx.model.send({ type: "open_unit", unit: entry.unit, layer: ctx.info.layer }));
    return card;
  }));
}

function attributionView(ctx: Ctx): HTMLElement[] {
  const { info, model } = ctx;
  const select = h("select", { class: "lw-select", "data-testid": "lw-attribution-target" });
  for (const prediction of model.get("sample_info")?.predictions ?? []) {
    const option = h("option", { value: prediction.index }, prediction.label);
    option.selected = prediction.index === info.target;
    select.append(option);
  }
  select.disabled = model.get("readonly");
  select.addEventListener("change", () => model.send({ type: "sample_target", index: Number(select.value) }));
  const side = h(
    "div",
    { class: "lw-blocks-side" },
    h("div", { class: "lw-examples-label" }, "Class", select),
    h("div", { class: "lw-hint" }, `score ${formatNumber(info.score ?? 0)} · orange: supports it, blue: opposes it`),
    h("div", { class: "lw-examples-label" }, "Most supporting units"),
    unitCards(ctx, info.supporting ?? [], "supporting"),
    h("div", { class: "lw-examples-label" }, "Most opposing units"),
    unitCards(ctx, info.opposing ?? [], "opposing"),
  );
  return [h("div", { class: "lw-blocks-main" }, img(ctx, info.heatmap, "lw-blocks-picture", "lw-attribution-heatmap", "attribution heat map"), side)];
}

const DRAW: Record<Exclude<SampleViewName, "units">, (ctx: Ctx) => HTMLElement[]> = {
  groups: groupsView,
  dictionary: dictionaryView,
  grid: gridView,
  attribution: attributionView,
};

export function sampleViews(model: AnyModel, bindings: Bindings): { tabs: HTMLElement; body: HTMLElement } {
  const names = Object.keys(VIEWS) as SampleViewName[];
  const buttons = names.map((view) => h("button", { type: "button", class: "lw-seg-item", "data-value": view, "data-testid": `lw-sample-view-${view}`, title: VIEWS[view] }, view));
  const tabs = h("div", { class: "lw-seg", role: "group", "data-testid": "lw-sample-views" }, ...buttons);
  const status = h("div", { class: "lw-blocks-status", "data-testid": "lw-blocks-status" });
  const content = h("div", { class: "lw-blocks-content", "data-testid": "lw-blocks-content" });
  const body = h("div", { class: "lw-blocks", "data-testid": "lw-blocks" }, status, content);
  const urls = new BlobUrls(bindings);
  let photo: string | null = null;
  let photoSig = "";
  let drawn = "";
  bindings.add(() => photo && URL.revokeObjectURL(photo));
  for (const button of buttons) bindings.listen(button, "click", () => model.send({ type: "sample_view", view: button.dataset.value as SampleViewName }));
  const draw = (): void => {
    const view = model.get("sample_view");
    for (const button of buttons) {
      button.setAttribute("aria-pressed", button.dataset.value === view ? "true" : "false");
      button.disabled = model.get("readonly");
    }
    const bytes = toBytes(model.get("sample_image"));
    const sig = bytes?.length ? signature(bytes) : "";
    if (sig !== photoSig) {
      if (photo) URL.revokeObjectURL(photo);
      photoSig = sig;
      photo = bytes?.length ? objectUrl(bytes) : null;
    }
    const info = model.get("sample_blocks") ?? {};
    const fresh = info.view === view && info.layer === model.get("layer");
    body.hidden = view === "units";
    body.dataset.state = fresh ? info.state ?? "" : "";
    body.dataset.view = view;
    const state = fresh ? info.state : undefined;
    status.dataset.state = state ?? "";
    status.textContent = !photo ? "Needs a sample image (upload one, or w.sample = image)." : !model.get("layer") ? "Pick a layer." : state === "error" ? `error: ${info.message ?? ""}` : state === "running" ? "computing…" : state === "rendering" ? "rendering visualizations…" : state === "stopped" ? "stopped (Start resumes)" : "";
    const blob = toBytes(model.get("sample_blocks_blob"));
    const key = JSON.stringify([view, fresh, info, model.get("readonly"), photoSig]) + (blob ? signature(blob) : "");
    if (key === drawn) return;
    drawn = key;
    urls.clear();
    const show = fresh && view !== "units" && state !== "error" && state !== "running";
    content.replaceChildren(...(show ? DRAW[view as Exclude<SampleViewName, "units">]({ model, urls, blob, info, photo }) : []));
  };
  bindings.on(["sample_view", "sample_blocks", "sample_blocks_blob", "sample_image", "layer", "readonly"], draw);
  draw();
  return { tabs, body };
}
