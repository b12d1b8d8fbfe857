// lucid_widgets front end: Microscope (layer browser + unit grid + unit detail) and LivePreview.
// Bundled by esbuild into lucid_widgets/static/widget.js (npm run build); no runtime fetches.
import { connectionsPanel } from "./blocks/connections";
import { atlasBadge } from "./microscope/atlas";
import { unitExamples, unitViews } from "./examples/examples";
import { unitGrid } from "./microscope/grid";
import { layerBrowser } from "./microscope/layers";
import { previewPanel } from "./preview/preview";
import { samplePanel } from "./sample/sample";
import { toBytes } from "./shared/binary";
import { Bindings, h } from "./shared/dom";
import type { AnyModel, RenderProps } from "./shared/types";

export type { AnyModel, WidgetTraits } from "./shared/types";

function topBar(model: AnyModel, bindings: Bindings): HTMLElement {
  const name = h("span", { class: "lw-model-name", "data-testid": "lw-model-name" });
  const mode = h("span", { class: "lw-brand" });
  const badge = h("span", { class: "lw-badge", "data-testid": "lw-readonly-badge" }, "static snapshot");
  const draw = (): void => {
    name.textContent = model.get("model_name");
    mode.textContent = model.get("mode") === "microscope" ? "Microscope" : "Live preview";
    badge.hidden = !model.get("readonly");
  };
  bindings.on(["model_name", "mode", "readonly"], draw);
  draw();
  const atlas = atlasBadge(model, bindings);
  return h("header", { class: "lw-topbar" }, mode, name, atlas, h("span", { class: "lw-spacer" }), badge);
}

function render({ model, el }: RenderProps): () => void {
  const bindings = new Bindings(model);
  const microscope = model.get("mode") === "microscope";
  const detail = previewPanel(model, bindings);
  let body: HTMLElement;
  if (microscope) {
    const unitTitle = h("span", { class: "lw-section-title", "data-testid": "lw-unit-title" });
    const unitHead = h("header", { class: "lw-unit-head" }, unitTitle, unitViews(model, bindings));
    const unit = h("div", { class: "lw-unit", "data-testid": "lw-unit" }, unitHead, detail, connectionsPanel(model, bindings), unitExamples(model, bindings));
    const main = h("div", { class: "lw-main" }, unitGrid(model, bindings), unit, samplePanel(model, bindings));
    body = h("div", { class: "lw-body" }, layerBrowser(model, bindings), main);
    const showDetail = (): void => {
      const frame = toBytes(model.get("frame")); // an empty frame is a zero-length DataView
      detail.hidden = model.get("unit") < 0 && !model.get("objective") && !frame?.length;
      unitHead.hidden = model.get("unit") < 0;
      unit.hidden = detail.hidden;
      const row = (model.get("layers") ?? []).find((entry) => entry.name === model.get("layer"));
      unitTitle.textContent = `Unit ${model.get("unit")} · ${row?.alias || row?.name || ""}`;
    };
    bindings.on(["unit", "objective", "frame", "layer"], showDetail);
    showDetail();
  } else {
    body = h("div", { class: "lw-body lw-body-live" }, detail);
  }
  const root = h(
    "div",
    { class: `lw-root lw-mode-${microscope ? "microscope" : "live"}`, "data-testid": "lw-root" },
    topBar(model, bindings),
    body,
  );
  // Typing in the widget's inputs must not trigger the notebook's keyboard shortcuts.
  bindings.listen(root, "keydown", (event) => {
    const target = event.target as HTMLElement | null;
    if (target && ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) event.stopPropagation();
  });
  el.classList.add("lw-host");
  el.replaceChildren(root);
  return () => {
    bindings.dispose();
    root.remove();
  };
}

export default { render };
