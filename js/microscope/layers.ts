// Layer browser: the catalog in forward order, grouped by block, filterable.
import { Bindings, flag, h, save } from "../shared/dom";
import type { AnyModel, LayerRow } from "../shared/types";

function shapeText(shape: number[]): string {
  return shape.length ? shape.join("×") : "–";
}

function matches(row: LayerRow, tokens: string[]): boolean {
  const haystack = `${row.name} ${row.alias ?? ""} ${row.type} ${row.group}`.toLowerCase();
  return tokens.every((token) => haystack.includes(token));
}

export function layerBrowser(model: AnyModel, bindings: Bindings): HTMLElement {
  const filter = h("input", {
    class: "lw-layer-filter",
    "data-testid": "lw-layer-filter",
    type: "search",
    placeholder: "Filter layers…",
    "aria-label": "Filter layers",
    spellcheck: "false",
  });
  const showAll = h("input", { type: "checkbox", "data-testid": "lw-layer-all" });
  const count = h("span", { class: "lw-layer-count", "data-testid": "lw-layer-count" });
  const list = h("div", { class: "lw-layer-list", "data-testid": "lw-layer-list", role: "listbox" });
  const root = h(
    "aside",
    { class: "lw-layers", "data-testid": "lw-layer-browser" },
    h("div", { class: "lw-layers-head" }, filter),
    h(
      "div",
      { class: "lw-layers-sub" },
      count,
      h("label", { class: "lw-check", title: "Show every module, not only the browsable layers" }, showAll, "all modules"),
    ),
    list,
  );

  const draw = (): void => {
    const rows = [...(model.get("layers") ?? [])].sort((a, b) => a.order - b.order);
    const tokens = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const selected = model.get("layer");
    const visible = rows.filter(
      (row) => (showAll.checked || row.browsable || row.name === selected) && matches(row, tokens),
    );
    const items: HTMLElement[] = [];
    let group: string | null = null;
    for (const row of visible) {
      if (row.group !== group && row.group !== row.name) {
        items.push(h("div", { class: "lw-layer-group", "data-testid": "lw-layer-group", "data-group": row.group }, row.group));
      }
      group = row.group;
      const label = row.alias || row.name;
      const item = h(
        "button",
        {
          class: "lw-layer-item",
          type: "button",
          role: "option",
          "data-testid": "lw-layer-item",
          "data-layer": row.name,
          "aria-selected": row.name === selected ? "true" : "false",
          title: row.alias ? `${row.alias} = ${row.name} (${row.type})` : `${row.name} (${row.type})`,
          disabled: !row.units,
          style: `--lw-depth:${Math.max(0, row.group !== row.name ? 1 : 0)}`,
        },
        h("span", { class: "lw-layer-name" }, label),
        h("span", { class: "lw-layer-type" }, row.type),
        h("span", { class: "lw-layer-shape" }, shapeText(row.shape)),
        h("span", { class: "lw-layer-units", title: "units" }, row.units === null ? "" : String(row.units)),
      );
      flag(item, "data-selected", row.name === selected);
      item.addEventListener("click", () => {
        if (!model.get("readonly")) save(model, "layer", row.name);
      });
      items.push(item);
    }
    if (!items.length) {
      items.push(h("div", { class: "lw-empty" }, tokens.length ? "No layer matches the filter." : "No layers."));
    }
    list.replaceChildren(...items);
    count.textContent = `${visible.length} of ${rows.length} layers`;
    if (selected !== shown) {
      shown = selected;
      const item = list.querySelector<HTMLElement>("[data-selected]");
      // after layout (the first draw happens before the element is attached)
      if (item) requestAnimationFrame(() => (list.scrollTop = Math.max(0, item.offsetTop - list.clientHeight / 3)));
    }
  };
  let shown = "";

  bindings.listen(filter, "input", draw);
  bindings.listen(showAll, "change", draw);
  bindings.on(["layers", "layer"], draw);
  draw();
  return root;
}
