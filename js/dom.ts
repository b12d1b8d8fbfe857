// Small DOM and binary helpers shared by the components.
import type { AnyModel, Binary, TraitName, WidgetTraits } from "./types";

type Attrs = Record<string, string | number | boolean | null | undefined>;

/** Create an element: h("button", { class: "lw-x", "data-testid": "lw-x" }, "label"). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

export function svg(tag: string, attrs: Attrs = {}): SVGElement {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  return el;
}

/** Toggle a boolean attribute (data-rendered, disabled, hidden...). */
export function flag(el: Element, name: string, on: boolean): void {
  if (on) el.setAttribute(name, "");
  else el.removeAttribute(name);
}

/** Bytes of a binary trait value (DataView from ipywidgets, or a buffer). */
export function toBytes(value: Binary | undefined): Uint8Array | null {
  if (!value) return null;
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return null;
}

/** The MIME type of encoded image bytes from their magic number. */
export function sniffMime(bytes: Uint8Array): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) {
    return "image/webp";
  }
  return "application/octet-stream";
}

/** An object URL for image bytes; the caller revokes it. */
export function objectUrl(bytes: Uint8Array, mime?: string): string {
  const copy = bytes.slice(); // a plain ArrayBuffer-backed copy (Blob needs no shared memory)
  return URL.createObjectURL(new Blob([copy.buffer], { type: mime || sniffMime(bytes) }));
}

/** A cheap content signature (FNV-1a) so unchanged thumbnails keep their URL and element. */
export function signature(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  const step = Math.max(1, Math.floor(bytes.length / 512));
  for (let i = 0; i < bytes.length; i += step) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `${bytes.length}:${hash.toString(16)}`;
}

/** Model listeners registered through one Bindings are removed together by dispose(). */
export class Bindings {
  private offs: (() => void)[] = [];

  constructor(private model: AnyModel) {}

  on(traits: TraitName[], callback: () => void): void {
    for (const trait of traits) {
      const event = `change:${trait}`;
      this.model.on(event, callback);
      this.offs.push(() => this.model.off(event, callback));
    }
  }

  listen<K extends keyof HTMLElementEventMap>(
    el: EventTarget,
    event: K,
    callback: (event: HTMLElementEventMap[K]) => void,
  ): void {
    const handler = callback as EventListener;
    el.addEventListener(event, handler);
    this.offs.push(() => el.removeEventListener(event, handler));
  }

  add(cleanup: () => void): void {
    this.offs.push(cleanup);
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
  }
}

/** Set a trait and sync it to Python. */
export function save<K extends TraitName>(model: AnyModel, key: K, value: WidgetTraits[K]): void {
  model.set(key, value);
  model.save_changes();
}

/** Format a number compactly for labels (loss values, learning rates). */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toPrecision(4).replace(/\.?0+$/, "");
}

/** Layer name as the objective grammar wants it (quoted unless a plain dotted identifier). */
export function quoteLayer(layer: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(layer) && !["True", "False", "None"].includes(layer)) {
    return layer;
  }
  return layer.includes("'") ? `"${layer}"` : `'${layer}'`;
}

/** Same text as lucid_widgets.expression.unit_term (+ the grid's negative toggle). */
export function unitTerm(layer: string, unit: number, kind: string, negative: boolean): string {
  const term = kind === "neuron" ? `neuron(${quoteLayer(layer)}, ${unit})` : `${quoteLayer(layer)}:${unit}`;
  return negative ? `-${term}` : term;
}
