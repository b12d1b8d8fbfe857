// Unit grid: one thumbnail per unit of the current page, streamed in by batches.
import { gridSettingsForm } from "../preview/settings";
import { objectUrl, signature, toBytes } from "../shared/binary";
import { Bindings, flag, h, save } from "../shared/dom";
import { unitTerm } from "../shared/objective";
import type { AnyModel, LayerRow, WidgetTraits } from "../shared/types";

type GridView = WidgetTraits["grid_view"];

interface Tile {
  el: HTMLButtonElement;
  img: HTMLImageElement;
  sig: string;
  url: string | null;
}

function currentRow(model: AnyModel): LayerRow | undefined {
  const layer = model.get("layer");
  return (model.get("layers") ?? []).find((row) => row.name === layer);
}

function segmented(
  model: AnyModel,
  bindings: Bindings,
  options: string[],
  testid: string,
): HTMLElement {
  const buttons = options.map((option) =>
    h("button", { type: "button", class: "lw-seg-item", "data-value": option, "data-testid": `${testid}-${option}` }, option),
  );
  const root = h("div", { class: "lw-seg", role: "group", "data-testid": testid }, ...buttons);
  const draw = (): void => {
    for (const button of buttons) {
      const on = button.dataset.value === model.get("grid_kind");
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.disabled = model.get("readonly");
    }
  };
  for (const button of buttons) {
    bindings.listen(button, "click", () => save(model, "grid_kind", button.dataset.value as "channel" | "neuron"));
  }
  bindings.on(["grid_kind", "readonly"], draw);
  draw();
  return root;
}

function viewToggle(model: AnyModel, bindings: Bindings): HTMLElement {
  const options: [GridView, string, string][] = [
    ["visualization", "visualization", "Each unit's feature visualization"],
    ["example", "top example", "Each unit's top dataset example (the crop it sees; needs w.set_dataset)"],
  ];
  const buttons = options.map(([value, label, title]) =>
    h("button", { type: "button", class: "lw-seg-item", "data-value": value, "data-testid": `lw-grid-view-${value}`, title }, label),
  );
  const draw = (): void => {
    for (const button of buttons) {
      button.setAttribute("aria-pressed", button.dataset.value === model.get("grid_view") ? "true" : "false");
      button.disabled = model.get("readonly");
    }
  };
  for (const button of buttons) {
    bindings.listen(button, "click", () => save(model, "grid_view", button.dataset.value as GridView));
  }
  bindings.on(["grid_view", "readonly"], draw);
  draw();
  return h("div", { class: "lw-seg", role: "group", "data-testid": "lw-grid-view" }, ...buttons);
}

export function unitGrid(model: AnyModel, bindings: Bindings): HTMLElement {
  const title = h("span", { class: "lw-grid-title", "data-testid": "lw-grid-title" });
  const negative = h("input", { type: "checkbox", "data-testid": "lw-grid-negative" });
  const prev = h("button", { type: "button", class: "lw-icon-button", "data-testid": "lw-page-prev", "aria-label": "Previous page" }, "‹");
  const next = h("button", { type: "button", class: "lw-icon-button", "data-testid": "lw-page-next", "aria-label": "Next page" }, "›");
  const pageLabel = h("span", { class: "lw-page-label", "data-testid": "lw-page-label" });
  const progress = h("span", { class: "lw-grid-progress", "data-testid": "lw-grid-progress", "aria-live": "polite" });
  const bar = h("div", { class: "lw-progress-bar" }, h("div", { class: "lw-progress-fill" }));
  const resume = h("button", { type: "button", class: "lw-button lw-small", "data-testid": "lw-grid-resume" }, "Render");
  const grid = h("div", { class: "lw-grid", "data-testid": "lw-grid" });
  const examplesHint = h("div", { class: "lw-empty lw-grid-examples-hint", "data-testid": "lw-grid-examples-hint" });
  const hint = h("div", { class: "lw-empty lw-grid-hint", "data-testid": "lw-grid-hint" }, "Pick a layer to see its units. Click a unit to optimize it live; shift-click to add it to the objective.");
  const root = h(
    "section",
    { class: "lw-grid-panel", "data-testid": "lw-grid-panel" },
    h(
      "header",
      { class: "lw-grid-head" },
      title,
      viewToggle(model, bindings),
      segmented(model, bindings, ["channel", "neuron"], "lw-grid-kind"),
      h("label", { class: "lw-check", title: "Minimize instead of maximize" }, negative, "negative"),
      h("span", { class: "lw-spacer" }),
      h("div", { class: "lw-pager" }, prev, pageLabel, next),
    ),
    h("div", { class: "lw-grid-status" }, progress, resume, bar, gridSettingsForm(model, bindings)),
    hint,
    examplesHint,
    grid,
  );
  const tiles = new Map<number, Tile>();
  bindings.add(() => tiles.forEach((tile) => tile.url && URL.revokeObjectURL(tile.url)));

  const pageUnits = (): number[] => {
    const row = currentRow(model);
    const count = row?.units ?? 0;
    const size = Math.max(1, model.get("page_size"));
    const start = model.get("page") * size;
    const units: number[] = [];
    for (let unit = start; unit < Math.min(count, start + size); unit++) units.push(unit);
    return units;
  };

  const onTileClick = (unit: number, event: MouseEvent): void => {
    if (model.get("readonly")) return;
    const row = currentRow(model);
    if (!row) return;
    if (event.shiftKey || event.metaKey || event.ctrlKey) {
      const term = unitTerm(row.alias || row.name, unit, model.get("grid_kind"), false);
      const text = model.get("objective").trim();
      const sign = model.get("grid_negative") ? "-" : "+";
      const joined = text ? `${text} ${sign} ${term}` : `${sign === "-" ? "-" : ""}${term}`;
      save(model, "objective", joined);
      return;
    }
    model.send({ type: "open_unit", unit, layer: row.name });
  };

  const layout = (): void => {
    const units = pageUnits();
    const keep = new Set(units);
    for (const [unit, tile] of tiles) {
      if (!keep.has(unit)) {
        if (tile.url) URL.revokeObjectURL(tile.url);
        tiles.delete(unit);
      }
    }
    const elements = units.map((unit) => {
      let tile = tiles.get(unit);
      if (!tile) {
        const img = h("img", { class: "lw-thumb-img", alt: `unit ${unit}`, draggable: "false" });
        const el = h(
          "button",
          { type: "button", class: "lw-thumb", "data-testid": "lw-thumb", "data-unit": unit, title: `unit ${unit} — click: optimize, shift-click: add to objective` },
          img,
          h("span", { class: "lw-thumb-label" }, String(unit)),
        );
        el.addEventListener("click", (event) => onTileClick(unit, event));
        tile = { el, img, sig: "", url: null };
        tiles.set(unit, tile);
      }
      flag(tile.el, "data-selected", unit === model.get("unit"));
      return tile.el;
    });
    grid.replaceChildren(...elements);
    grid.style.setProperty("--lw-thumb", `${Math.min(112, Math.max(56, model.get("grid_settings")?.size ?? 96))}px`);
    const row = currentRow(model);
    hint.hidden = Boolean(row);
    title.textContent = row ? `${row.alias || row.name} · ${row.units ?? 0} units` : "No layer selected";
    const count = row?.units ?? 0;
    const first = units.length ? units[0] : 0;
    pageLabel.textContent = units.length ? `${first}–${units[units.length - 1]} of ${count}` : "";
    prev.disabled = model.get("page") <= 0 || model.get("readonly");
    next.disabled = !units.length || units[units.length - 1] >= count - 1 || model.get("readonly");
    negative.checked = model.get("grid_negative");
    negative.disabled = model.get("readonly");
    images();
    status();
  };

  const images = (): void => {
    const examples = model.get("grid_view") === "example";
    const blob = toBytes(model.get(examples ? "grid_examples_blob" : "grid_blob"));
    const info = model.get("grid_examples") ?? {};
    const sourceLayer = examples ? info.layer : model.get("grid_progress")?.layer;
    const index = examples ? info.items ?? [] : model.get("grid_index") ?? [];
    const seen = new Set<number>();
    grid.dataset.view = examples ? "example" : "visualization";
    const state = model.get("examples_status")?.state ?? "idle";
    examplesHint.hidden = !examples || (Boolean(index.length) && sourceLayer === model.get("layer"));
    examplesHint.textContent =
      state === "idle" ? "No dataset: call w.set_dataset(images) to see each unit's top example." : state === "error" ? "Dataset examples failed (see the unit detail)." : "Computing dataset examples…";
    if (blob && sourceLayer === model.get("layer")) {
      for (const entry of index) {
        const tile = tiles.get(entry.unit);
        if (!tile) continue;
        const bytes = blob.subarray(entry.offset, entry.offset + entry.length);
        const sig = signature(bytes);
        seen.add(entry.unit);
        if (sig === tile.sig) continue;
        if (tile.url) URL.revokeObjectURL(tile.url);
        tile.url = objectUrl(bytes, entry.mime);
        tile.sig = sig;
        tile.img.src = tile.url;
        flag(tile.el, "data-rendered", true);
      }
    }
    for (const [unit, tile] of tiles) {
      if (!seen.has(unit) && tile.url) {
        URL.revokeObjectURL(tile.url);
        tile.url = null;
        tile.sig = "";
        tile.img.removeAttribute("src");
        flag(tile.el, "data-rendered", false);
      }
    }
  };

  const status = (): void => {
    const info = model.get("grid_progress") ?? {};
    const fresh = info.layer === model.get("layer") && info.page === model.get("page");
    const state = fresh ? info.state ?? "" : model.get("layer") ? "rendering" : "";
    const rendered = fresh ? info.rendered ?? 0 : 0;
    const total = fresh ? info.total ?? 0 : pageUnits().length;
    const batch = new Set(fresh && state === "rendering" ? info.batch ?? [] : []);
    for (const [unit, tile] of tiles) flag(tile.el, "data-busy", batch.has(unit));
    let text = "";
    if (state === "rendering") {
      text = `rendering ${rendered}/${total}`;
      if (batch.size && info.steps) text += ` · step ${info.batch_step ?? 0}/${info.steps}`;
    } else if (state === "done") text = `${rendered}/${total} rendered`;
    else if (state === "stopped") text = `stopped at ${rendered}/${total}`;
    else if (state === "error") text = `error (${rendered}/${total}) — see message`;
    progress.textContent = text;
    progress.dataset.state = state;
    const fraction = total ? (rendered + (batch.size && info.steps ? (batch.size * (info.batch_step ?? 0)) / info.steps : 0)) / total : 0;
    (bar.firstElementChild as HTMLElement).style.width = `${Math.round(Math.min(1, fraction) * 100)}%`;
    bar.hidden = state !== "rendering";
    resume.hidden = !(state === "stopped" || state === "error") || model.get("readonly");
  };

  bindings.listen(prev, "click", () => save(model, "page", Math.max(0, model.get("page") - 1)));
  bindings.listen(next, "click", () => save(model, "page", model.get("page") + 1));
  bindings.listen(negative, "change", () => save(model, "grid_negative", negative.checked));
  bindings.listen(resume, "click", () => model.send({ type: "grid_resume" }));
  bindings.on(["layer", "layers", "page", "page_size", "unit", "readonly", "grid_negative", "grid_settings"], layout);
  bindings.on(["grid_blob", "grid_index", "grid_view", "grid_examples", "grid_examples_blob", "examples_status"], images);
  bindings.on(["grid_progress"], () => {
    images();
    status();
  });
  layout();
  return root;
}
