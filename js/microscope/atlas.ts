// The Microscope on an atlas: a badge naming the atlas, and the open unit's connections.
import { Bindings, h } from "../shared/dom";
import type { AnyModel, ConnectionEntry } from "../shared/types";

export function atlasBadge(model: AnyModel, bindings: Bindings): HTMLElement {
  const badge = h("span", { class: "lw-badge lw-atlas-badge", "data-testid": "lw-atlas-badge" });
  const draw = (): void => {
    const info = model.get("atlas_info") ?? {};
    badge.hidden = !info.folder;
    const written = info.write_back ? ` · ${info.written ?? 0} written back` : "";
    const unit = info.unit === "atlas" && model.get("unit") >= 0 ? " · unit from the atlas" : "";
    badge.textContent = `atlas · ${info.stored ?? 0} stored${written}${unit}`;
    badge.title = `${info.folder ?? ""}${info.write_error ? `\n${info.write_error}` : ""}`;
  };
  bindings.on(["atlas_info", "unit"], draw);
  draw();
  return badge;
}

function connectionRow(model: AnyModel, title: string, entry: ConnectionEntry): HTMLElement {
  const links = entry.units.map((unit, i) => {
    const strength = entry.strength[i] ?? 0;
    const link = h(
      "button",
      {
        class: `lw-connection ${strength < 0 ? "lw-connection-neg" : "lw-connection-pos"}`,
        type: "button",
        "data-testid": "lw-atlas-connection",
        "data-layer": entry.layer,
        "data-unit": String(unit),
        title: `${entry.layer}:${unit} · ${strength.toFixed(4)} (${entry.method})`,
      },
      String(unit),
    );
    link.addEventListener("click", () => model.send({ type: "open_unit", unit, layer: entry.layer }));
    return link;
  });
  return h(
    "div",
    { class: "lw-connections-row", "data-testid": `lw-atlas-connections-${title}` },
    h("span", { class: "lw-connections-title" }, `${title} · ${entry.layer}`),
    ...links,
  );
}

export function unitConnections(model: AnyModel, bindings: Bindings): HTMLElement {
  const root = h("section", { class: "lw-atlas-connections", "data-testid": "lw-atlas-connections" });
  const draw = (): void => {
    const info = model.get("atlas_connections") ?? {};
    const fresh = info.layer === model.get("layer") && info.unit === model.get("unit");
    const rows: HTMLElement[] = [];
    if (fresh && info.in) rows.push(connectionRow(model, "inputs", info.in));
    if (fresh && info.out) rows.push(connectionRow(model, "outputs", info.out));
    root.replaceChildren(...(rows.length ? [h("div", { class: "lw-section-title" }, "Connections"), ...rows] : []));
    root.hidden = rows.length === 0;
  };
  bindings.on(["atlas_connections", "layer", "unit"], draw);
  draw();
  return root;
}
