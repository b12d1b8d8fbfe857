// Small DOM helpers shared by the components: element builders, model bindings, labels.
import type { AnyModel, TraitName, WidgetTraits } from "./types";

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
