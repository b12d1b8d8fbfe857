// Unit detail: the one "Connections" panel under the preview. The units of the previous layer that
// feed the open unit and the units of the next layer that it feeds (signed strength, thumbnail, the
// expanded-weight kernel where the path is linear); clicking one opens it. The same panel draws the
// connections an atlas stores and the ones computed live (unit_connections.source says which).
import { BlobUrls, signature, toBytes } from "../shared/binary";
import { Bindings, formatNumber, h } from "../shared/dom";
import type { AnyModel, ConnectionItem, ConnectionSide, ConnectionSource } from "../shared/types";

const METHOD: Record<string, string> = {
  expanded_weights: "expanded weights (linear path)",
  attribution: "attribution (non-linear path)",
};

const SOURCE: Record<ConnectionSource, [string, string]> = {
  atlas: ["from the atlas", "Stored in the atlas this Microscope reads: shown with no computation"],
  live: ["computed live", "Computed now by lw.blocks.connections on this model"],
};

const STATE: Record<string, string> = {
  running: "computing…",
  rendering: "rendering thumbnails…",
  waiting: "thumbnails render once the preview is done",
  stopped: "stopped",
};

function layerLabel(model: AnyModel, name: string | undefined): string {
  const row = (model.get("layers") ?? []).find((entry) => entry.name === name);
  return row?.alias || name || "";
}

function card(model: AnyModel, direction: string, side: ConnectionSide, item: ConnectionItem, urls: BlobUrls, blob: Uint8Array | null): HTMLElement {
  const pictures = h("span", { class: "lw-conn-pics" });
  const thumb = urls.url(blob, item.thumb);
  const kernel = urls.url(blob, item.kernel);
  if (thumb) pictures.append(h("img", { class: "lw-conn-thumb", "data-testid": "lw-connection-thumb", src: thumb, alt: `unit ${item.unit}` }));
  else pictures.append(h("span", { class: "lw-conn-nothumb", title: "rendering its visualization…" }, "…"));
  if (kernel) pictures.append(h("img", { class: "lw-conn-kernel", "data-testid": "lw-connection-kernel", src: kernel, alt: "kernel", title: "expanded-weight kernel (orange +, blue −)" }));
  const sign = item.strength >= 0 ? "positive" : "negative";
  const layer = layerLabel(model, side.layer);
  const button = h(
    "button",
    {
      type: "button", class: "lw-conn", "data-testid": "lw-connection", "data-unit": item.unit,
      "data-layer": side.layer ?? "", "data-direction": direction, "data-sign": sign,
      title: `${layer}:${item.unit} · strength ${formatNumber(item.strength)} · click: open it`,
    },
    pictures,
    h("span", { class: "lw-example-caption" }, h("span", {}, `${item.unit}`), h("span", { class: "lw-conn-strength", "data-testid": "lw-connection-strength" }, `${item.strength >= 0 ? "+" : ""}${formatNumber(item.strength)}`)),
  );
  button.disabled = model.get("readonly");
  button.addEventListener("click", () => model.send({ type: "open_unit", unit: item.unit, layer: side.layer }));
  return button;
}

export function connectionsPanel(model: AnyModel, bindings: Bindings): HTMLElement {
  const status = h("span", { class: "lw-examples-status", "data-testid": "lw-connections-status" });
  const source = h("span", { class: "lw-badge lw-conn-source", "data-testid": "lw-connections-source" });
  const rows = h("div", { class: "lw-conn-rows" });
  const root = h(
    "section",
    { class: "lw-connections", "data-testid": "lw-connections" },
    h("header", { class: "lw-examples-head" }, h("span", { class: "lw-section-sub" }, "Connections"), source, status),
    rows,
  );
  const urls = new BlobUrls(bindings);
  let drawn = "";
  const side = (direction: "in" | "out", data: ConnectionSide | undefined, blob: Uint8Array | null): HTMLElement => {
    const title = direction === "in" ? "Inputs from" : "Outputs to";
    const label = h("div", { class: "lw-examples-label" }, `${title} ${layerLabel(model, data?.layer)}`);
    if (data?.method) label.append(h("span", { class: "lw-hint", "data-testid": "lw-connections-method" }, METHOD[data.method] ?? data.method));
    const cards = h("div", { class: "lw-example-cards" }, ...(data?.items ?? []).map((item) => card(model, direction, data!, item, urls, blob)));
    const row = h("div", { class: "lw-examples-row", "data-testid": `lw-connections-${direction}`, "data-direction": direction }, label, cards);
    if (data?.error !== undefined && !data.items) {
      label.textContent = direction === "in" ? "Inputs" : "Outputs";
      cards.replaceChildren(h("span", { class: "lw-hint" }, data.error || "none"));
    }
    return row;
  };
  const draw = (): void => {
    const info = model.get("unit_connections") ?? {};
    const blob = toBytes(model.get("unit_connections_blob"));
    const fresh = info.layer === model.get("layer") && info.unit === model.get("unit");
    root.hidden = model.get("unit") < 0 || !info.state;
    root.dataset.state = fresh ? info.state ?? "" : "";
    const origin = fresh && info.source ? SOURCE[info.source] : undefined;
    root.dataset.source = origin ? info.source : "";
    source.dataset.source = root.dataset.source;
    source.hidden = !origin;
    source.textContent = origin?.[0] ?? "";
    source.title = origin?.[1] ?? "";
    status.textContent = STATE[info.state ?? ""] ?? "";
    const key = JSON.stringify([info, model.get("readonly")]) + (blob ? signature(blob) : "");
    if (key === drawn) return;
    drawn = key;
    urls.clear();
    rows.replaceChildren(...(fresh && info.state !== "running" ? [side("in", info.inputs, blob), side("out", info.outputs, blob)] : []));
  };
  bindings.on(["unit_connections", "unit_connections_blob", "unit", "layer", "readonly"], draw);
  draw();
  return root;
}
