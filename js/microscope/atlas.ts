// The Microscope on an atlas: a badge naming the atlas. (The open unit's stored connections are
// drawn by the one Connections panel, js/blocks/connections.ts, with source "atlas".)
import { Bindings, h } from "../shared/dom";
import type { AnyModel } from "../shared/types";

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
